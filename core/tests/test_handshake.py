import pytest

from shoal import handshake, wire
from shoal.handshake import HandshakeError, Initiator, respond
from shoal.identity import StaticKeypair
from shoal.session import Session

CHACHA = (wire.CIPHER_CHACHA20_POLY1305,)


@pytest.fixture
def keys():
    return StaticKeypair.generate(), StaticKeypair.generate()


def run(a, b, ciphers_a=CHACHA, ciphers_b=CHACHA, ts=1):
    init = Initiator(a, b.public, 11, ts, ciphers_a)
    resp = respond(b, wire.decode_init(init.packet), 22, lambda k, t: k == a.public, ciphers_b)
    ka = init.process_response(wire.decode_resp(resp.packet))
    return ka, resp.keys


def test_both_sides_agree(keys):
    a, b = keys
    ka, kb = run(a, b)
    assert ka.send_key == kb.recv_key and ka.recv_key == kb.send_key
    assert (ka.local_index, ka.remote_index) == (11, 22) == (kb.remote_index, kb.local_index)
    assert ka.remote_static == b.public and kb.remote_static == a.public
    sa, sb = Session(ka, 0), Session(kb, 0)
    assert sb.open(sa.seal(b"hello")) == b"hello"
    assert sa.open(sb.seal(b"back")) == b"back"


def test_cipher_negotiation_prefers_responder_order(keys):
    a, b = keys
    ka, kb = run(a, b, (1, 2), (2, 1))
    assert ka.cipher == kb.cipher == wire.CIPHER_AES_256_GCM
    sa, sb = Session(ka, 0), Session(kb, 0)
    assert sb.open(sa.seal(b"gcm")) == b"gcm"


def test_no_common_cipher(keys):
    a, b = keys
    with pytest.raises(HandshakeError):
        run(a, b, (1,), (2,))


def test_unknown_initiator_refused(keys):
    a, b = keys
    init = Initiator(a, b.public, 1, 1, CHACHA)
    with pytest.raises(HandshakeError):
        respond(b, wire.decode_init(init.packet), 2, lambda k, t: False, CHACHA)


def test_initiation_for_someone_else_fails(keys):
    a, b = keys
    c = StaticKeypair.generate()
    init = Initiator(a, c.public, 1, 1, CHACHA)  # meant for c
    with pytest.raises(HandshakeError):
        respond(b, wire.decode_init(init.packet), 2, lambda k, t: True, CHACHA)


def test_tampered_initiation_fails(keys):
    a, b = keys
    init = Initiator(a, b.public, 1, 1, CHACHA)
    bad = bytearray(init.packet)
    bad[60] ^= 1
    with pytest.raises(HandshakeError):
        respond(b, wire.decode_init(bytes(bad)), 2, lambda k, t: True, CHACHA)


def test_response_from_impostor_fails(keys):
    a, b = keys
    mallory = StaticKeypair.generate()
    init = Initiator(a, b.public, 1, 1, CHACHA)
    # mallory cannot even read the initiation (it is for b's key)
    with pytest.raises(HandshakeError):
        respond(mallory, wire.decode_init(init.packet), 2, lambda k, t: True, CHACHA)


def test_wrong_receiver_index(keys):
    a, b = keys
    init = Initiator(a, b.public, 5, 1, CHACHA)
    resp = respond(b, wire.decode_init(init.packet), 6, lambda k, t: True, CHACHA)
    msg = wire.decode_resp(resp.packet)
    with pytest.raises(HandshakeError):
        init.process_response(wire.HandshakeResp(msg.sender, 999, msg.noise))


def test_timestamp_passed_to_accept(keys):
    a, b = keys
    seen = []
    init = Initiator(a, b.public, 1, 123456789, CHACHA)
    respond(b, wire.decode_init(init.packet), 2, lambda k, t: seen.append(t) or True, CHACHA)
    assert seen == [123456789]


def test_new_index_nonzero_and_free():
    taken = {1, 2, 3}
    for _ in range(100):
        i = handshake.new_index(lambda x: x in taken)
        assert i and i not in taken


def test_forged_response_fails_the_attempt_cleanly(keys):
    a, b = keys
    init = Initiator(a, b.public, 5, 1, CHACHA)
    resp = respond(b, wire.decode_init(init.packet), 6, lambda k, t: True, CHACHA)
    msg = wire.decode_resp(resp.packet)
    forged = wire.HandshakeResp(msg.sender, msg.receiver, bytes(48))
    with pytest.raises(HandshakeError, match="does not authenticate"):
        init.process_response(forged)
    with pytest.raises(HandshakeError):  # the attempt is over; a new one will be made
        init.process_response(msg)


def test_messages_carry_mac1_for_their_receiver():
    from shoal.cookie import CookieChecker
    a, b = StaticKeypair.generate(), StaticKeypair.generate()
    init = Initiator(a, b.public, 1, 10, CHACHA)
    assert CookieChecker(b.public, lambda: 0.0).check_mac1(init.packet)
    assert not CookieChecker(a.public, lambda: 0.0).check_mac1(init.packet)
    resp = respond(b, wire.decode_init(init.packet), 2, lambda k, t: True, CHACHA)
    assert CookieChecker(a.public, lambda: 0.0).check_mac1(resp.packet)
