"""Check list: priorities, pacing, retransmission, nomination, dead paths (injected clock)."""

from shoal_traversal_ice.checklist import (
    DEAD_AFTER, MAX_TRIES, PACE, RTO, CandidateType, CheckList, PairState,
)

MAIN, PUNCH = object(), object()
HOST = ("192.168.1.2", 41641)
SRFLX = ("203.0.113.101", 40000)


def make() -> CheckList:
    cl = CheckList("peer", MAIN)
    cl.set_remote_candidates([(SRFLX, CandidateType.SRFLX), (HOST, CandidateType.HOST)])
    return cl


def test_pairs_ordered_by_candidate_type_priority():
    cl = make()
    assert [p.remote for p in cl.pairs] == [HOST, SRFLX]
    assert CandidateType.HOST > CandidateType.PRFLX > CandidateType.SRFLX


def test_checks_are_paced():
    cl = make()
    first = cl.due(0.0)
    assert [p.remote for p, _ in first] == [HOST]      # one new check per PACE
    assert cl.due(PACE / 2) == []
    second = cl.due(PACE)
    assert [p.remote for p, _ in second] == [SRFLX]


def test_retransmission_then_failure():
    cl = make()
    t = 0.0
    sent = 0
    while t < RTO * (MAX_TRIES + 2):
        sent += sum(1 for p, _ in cl.due(t) if p.remote == HOST)
        t += 0.01
    host = cl.find(HOST, MAIN)
    assert sent == MAX_TRIES and host.state is PairState.FAILED


def test_pong_succeeds_and_best_pair_is_selected():
    cl = make()
    (p1, tx1), = cl.due(0.0)
    (p2, tx2), = cl.due(PACE)
    assert cl.on_pong(tx2, PACE + 0.004) is p2
    assert cl.select() is p2                           # srflx works
    assert cl.on_pong(tx1, 0.03) is p1
    assert cl.select() is p1 and cl.selected is p1     # host has the higher priority
    assert cl.on_pong(b"unknown-txid", 0.05) is None   # pongs only for our own txids
    assert cl.select() is None                         # unchanged


def test_triggered_check_learns_peer_reflexive_candidate():
    cl = make()
    prflx = ("203.0.113.101", 51234)
    pair, txid = cl.triggered(prflx, PUNCH, 1.0)
    assert pair.type is CandidateType.PRFLX and pair.via is PUNCH
    assert cl.on_pong(txid, 1.001) is pair
    assert cl.best() is pair


def test_dead_selected_path_is_noticed():
    cl = make()
    (p1, tx1), = cl.due(0.0)
    cl.on_pong(tx1, 0.001)
    cl.select()
    t = 0.001
    while t < DEAD_AFTER + 1:   # keepalive checks go out, no pong comes back
        cl.due(t)
        t += 0.05
    assert p1.state is PairState.FAILED and cl.selected is None
    assert cl.select() is None


def test_new_candidates_revive_failed_pairs():
    cl = make()
    t = 0.0
    while t < RTO * (MAX_TRIES + 3):
        cl.due(t)
        t += 0.01
    assert all(p.state is PairState.FAILED for p in cl.pairs)
    cl.set_remote_candidates([(SRFLX, CandidateType.SRFLX)])
    assert cl.find(SRFLX, MAIN).state is PairState.WAITING


def test_a_missed_keepalive_is_followed_by_quick_checks_and_loss_alone_does_not_kill():
    import itertools
    import random

    from shoal_traversal_ice.checklist import KEEPALIVE, MISSED

    cl = CheckList("peer", MAIN)
    p = cl.add(SRFLX, CandidateType.SRFLX)
    (_, tx), = cl.due(0.0)
    cl.on_pong(tx, 0.001)
    sent = [t for t in (x / 100 for x in range(1, 170)) for _ in cl.due(t)]
    # one keepalive at +KEEPALIVE, unanswered; then checks every MISSED until it is dead
    assert abs(sent[0] - KEEPALIVE) < 0.02, sent
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(sent)]
    assert len(gaps) >= 8 and all(abs(g - MISSED) < 0.02 for g in gaps), gaps
    assert p.state is PairState.FAILED   # a dead path is still dead after DEAD_AFTER
    assert sent[-1] < DEAD_AFTER

    # answered keepalives: one every KEEPALIVE, nothing more
    cl = CheckList("peer", MAIN)
    p = cl.add(SRFLX, CandidateType.SRFLX)
    (_, tx), = cl.due(0.0)
    cl.on_pong(tx, 0.001)
    sent = []
    for t in (x / 100 for x in range(1, 300)):
        for _, tx in cl.due(t):
            sent.append(t)
            cl.on_pong(tx, t + 0.002)
    assert [round(b - a, 1) for a, b in itertools.pairwise(sent)] == [KEEPALIVE] * (len(sent) - 1)

    # a lossy link: 59 % of round trips lost (20 % each way at both ends), 2 minutes,
    # five seeds: a handful of deaths in all (checking at KEEPALIVE only: 81)
    deaths = 0
    for seed in range(5):
        rng = random.Random(seed)
        cl = CheckList("peer", MAIN)
        p = cl.add(SRFLX, CandidateType.SRFLX)
        t, was = 0.0, p.state
        while t < 120:
            t = round(t + 0.01, 2)
            for _, tx in cl.due(t):
                if rng.random() > 0.59:
                    cl.on_pong(tx, t)
            deaths += p.state is PairState.FAILED and was is not PairState.FAILED
            was = p.state
    assert deaths <= 8, deaths
