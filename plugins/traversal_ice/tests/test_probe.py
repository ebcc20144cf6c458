import pytest
from hypothesis import given, strategies as st

from shoal.identity import StaticKeypair
from shoal_traversal_ice import probe as pr


def keys():
    a, b = StaticKeypair.generate(), StaticKeypair.generate()
    return a, b, pr.pair_key(a.private, b.public, a.public), pr.pair_key(b.private, a.public, b.public)


def test_roundtrip_both_directions():
    a, b, ka, kb = keys()
    ping = pr.Probe(pr.PING, pr.new_txid(), 0, ("203.0.113.9", 4000))
    pkt = pr.seal(ka, a.public, ping)
    assert pr.sender_of(pkt) == a.public
    assert pr.open_(kb, pkt) == ping


def test_forged_or_tampered_probes_rejected():
    a, b, ka, kb = keys()
    mallory = StaticKeypair.generate()
    km = pr.pair_key(mallory.private, b.public, mallory.public)
    pkt = pr.seal(km, a.public, pr.Probe(pr.PONG, b"x" * 12, 0, ("1.2.3.4", 1)))  # claims a
    with pytest.raises(pr.BadProbe):
        pr.open_(kb, pkt)
    good = bytearray(pr.seal(ka, a.public, pr.Probe(pr.PING, b"y" * 12, 0, ("1.2.3.4", 1))))
    for i in (5, 40, len(good) - 1):
        bad = bytearray(good)
        bad[i] ^= 1
        with pytest.raises(pr.BadProbe):
            pr.open_(kb, bytes(bad))


KEYS = keys()


@given(st.binary(max_size=120))
def test_garbage_never_crashes(data):
    _, _, _, kb = KEYS
    try:
        pr.sender_of(data)
        pr.open_(kb, data)
    except pr.BadProbe:
        pass
