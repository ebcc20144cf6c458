"""The agent's reports to the node: every path it offered is reported lost when its
checks stop answering, not only the latest one (sans-IO, with the fake node)."""

from types import SimpleNamespace

from shoal.testing.fakes import FakeNetwork, FakeNodeHandle, FakeTransport
from shoal_traversal_ice import checklist as cl
from shoal_traversal_ice.agent import Agent, PeerTraversal
from shoal_traversal_ice.plugin import IceSettings

OLD, NEW = ("203.0.113.105", 56337), ("203.0.113.105", 18041)


def succeed(checks: cl.CheckList, pair: cl.Pair, now: float, rtt: float) -> None:
    txid = checks._send(pair, now - rtt, cl.RTO)
    pair.set_state(cl.PairState.IN_PROGRESS, "e")
    checks.on_pong(txid, now)


def test_an_earlier_offer_that_dies_is_reported_lost():
    main = FakeTransport(FakeNetwork(), ("192.168.4.2", 41641), "udp")
    node = FakeNodeHandle("ice", config=SimpleNamespace(name="d", plugins=["udp", "ice"]),
                          main_transport=main)
    agent = Agent(node, IceSettings())
    peer = SimpleNamespace(public_key=b"e" * 32, name="e")
    pt = PeerTraversal(peer, SimpleNamespace(), cl.CheckList("e", main), None)
    old = pt.checks.add(OLD, cl.CandidateType.SRFLX)
    succeed(pt.checks, old, 10.0, 0.0009)
    agent._select(pt)
    assert [o[1].endpoint for o in node.offered] == [OLD]
    # the peer's NAT rebinds: a punched pair answers, faster (the node may well stay on
    # OLD, the difference being under its hysteresis)
    new = pt.checks.add(NEW, cl.CandidateType.PRFLX)
    succeed(pt.checks, new, 10.2, 0.0001)
    agent._select(pt)
    assert [o[1].endpoint for o in node.offered] == [OLD, NEW] and node.lost == []
    # OLD stops answering: the agent says so, though NEW is the pair it offers now
    for t in (10.5, 11.0, 11.5, 12.0, 12.5):
        for pair, txid in pt.checks.due(t):
            if pair is new:            # NEW answers its keepalives, OLD does not
                pt.checks.on_pong(txid, t)
        agent._select(pt)
    assert [(lost[1].endpoint, lost[2]) for lost in node.lost] == [(OLD, "check failed")]
    assert pt.vouched == {node.offered[-1][1]}
