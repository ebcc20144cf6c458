"""Birthday punching against a fake symmetric NAT and a fake port-restricted NAT."""

import random

from shoal_traversal_ice.birthday import PORT_MAX, PORT_MIN, Opener, Sprayer


def test_sprayer_is_bounded_and_paced():
    s = Sprayer("203.0.113.9", budget=100, rate=1000.0, rng=random.Random(1).randint)
    assert len(s.due(0.0)) == 1
    assert len(s.due(0.05)) == 50
    sent = 51 + len(s.due(10.0))
    assert sent == 100 and s.done and s.due(20.0) == []
    s2 = Sprayer("203.0.113.9", budget=10)
    s2.stopped = True
    assert s2.due(0.0) == [] and s2.done


def test_opener_cycles_sockets_in_rounds():
    o = Opener(sockets=4, rounds=2, round_time=0.4)
    got = o.due(0.0) + o.due(0.2) + o.due(1.0)
    assert got == [0, 1, 2, 3, 0, 1, 2, 3] and o.done


def test_fake_nats_meet_with_high_probability():
    """K random external ports (symmetric side) vs N random probes (port-restricted side)."""
    rng = random.Random(7)
    hits = 0
    trials = 200
    for _ in range(trials):
        opener = Opener(sockets=256, rounds=1, round_time=0.5)
        # the symmetric NAT maps each socket's flow to a random external port
        mapped = {rng.randint(PORT_MIN, PORT_MAX) for _ in opener.due(0.0) + opener.due(1.0)}
        sprayer = Sprayer("203.0.113.9", budget=2048, rng=rng.randint)
        probes = {port for _, port in sprayer.due(0.0) + sprayer.due(100.0)}
        hits += bool(mapped & probes)
    # expected miss rate exp(-256*2048/64512) ~ 3e-4
    assert hits >= trials - 2
