from shoal import wire
from shoal.handshake import Initiator, respond
from shoal.identity import StaticKeypair
from shoal.session import REJECT_AFTER_TIME, Session


def pair():
    a, b = StaticKeypair.generate(), StaticKeypair.generate()
    init = Initiator(a, b.public, 1, 1, (1,))
    resp = respond(b, wire.decode_init(init.packet), 2, lambda k, t: True, (1,))
    ka = init.process_response(wire.decode_resp(resp.packet))
    return Session(ka, 0.0), Session(resp.keys, 0.0)


def test_reorder_and_duplicates():
    a, b = pair()
    pkts = [a.seal(bytes([i]) * 10) for i in range(50)]
    order = list(reversed(pkts)) + pkts[:10]
    got = [b.open(p) for p in order]
    assert got[:50] == [bytes([i]) * 10 for i in reversed(range(50))]
    assert got[50:] == [None] * 10  # duplicates dropped


def test_tampering_any_byte_is_detected():
    a, b = pair()
    pkt = a.seal(b"secret payload")
    for i in range(len(pkt)):
        if 4 <= i < 8:
            continue  # receiver index: the engine routes on it, a change finds no session
        bad = bytearray(pkt)
        bad[i] ^= 0x01
        assert b.open(bytes(bad)) is None, i
    assert b.open(pkt) == b"secret payload"


def test_header_is_authenticated():
    a, b = pair()
    pkt = bytearray(a.seal(b"x"))
    pkt[2] = 1  # reserved byte
    assert b.open(bytes(pkt)) is None


def test_counter_is_explicit_and_increments():
    a, _ = pair()
    p0, p1 = a.seal(b""), a.seal(b"")
    assert int.from_bytes(p0[8:16], "little") == 0
    assert int.from_bytes(p1[8:16], "little") == 1
    assert len(p0) == wire.DATA_HEADER_LEN + wire.TAG_LEN


def test_expiry():
    a, _ = pair()
    assert not a.expired(REJECT_AFTER_TIME - 1)
    assert a.expired(REJECT_AFTER_TIME)
