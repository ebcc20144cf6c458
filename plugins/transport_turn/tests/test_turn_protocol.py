"""TURN sans-IO pieces: credentials, ChannelData and stream framing, the allocation machine."""

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal import stun
from shoal_transport_turn import framing
from shoal_transport_turn.allocation import (
    RETRY,
    Allocation,
    Failure,
    State,
    data_indication,
    send_indication,
)
from shoal_transport_turn.client import ServerSpec
from shoal_transport_turn.credentials import Credentials, rest_api

REALM = "shoal.test"


def test_rest_api_credentials_match_coturns_formula():
    c = rest_api("s3cret", "alice", ttl=3600, now=1_700_000_000.7)
    assert c.username == "1700003600:alice"
    want = base64.b64encode(hmac.new(b"s3cret", b"1700003600:alice", hashlib.sha1).digest())
    assert c.password == want.decode()
    assert "s3cret" not in repr(c) and c.password not in repr(c) and c.password not in str(c)
    assert c.key(REALM) == hashlib.md5(f"1700003600:alice:{REALM}:{c.password}".encode()).digest()


def test_channel_data_roundtrip_and_padding():
    assert framing.decode_channel_data(framing.encode_channel_data(0x4001, b"abc")) == \
        (0x4001, b"abc")
    assert len(framing.encode_channel_data(0x4001, b"abc", stream=True)) == 8
    with pytest.raises(ValueError):
        framing.encode_channel_data(0x3FFF, b"")
    with pytest.raises(framing.FramingError):
        framing.decode_channel_data(b"\x40\x01\x00\x09abc")


def test_stream_deframer_cuts_interleaved_messages():
    m1 = stun.encode(stun.binding_request())
    cd = framing.encode_channel_data(0x4002, b"hello", stream=True)
    m2 = stun.encode(send_indication(("203.0.113.5", 7), b"x" * 33))
    stream = m1 + cd + m2
    d = framing.StreamDeframer()
    out = []
    for i in range(0, len(stream), 7):  # arbitrary TCP segmentation
        out += d.feed(stream[i:i + 7])
    assert out == [m1, cd[:9], m2]
    with pytest.raises(framing.FramingError):
        framing.StreamDeframer().feed(b"\xff" * 8)


@given(st.binary(max_size=300))
def test_deframer_never_crashes(data):
    try:
        framing.StreamDeframer().feed(data)
    except framing.FramingError:
        pass


def test_server_urls():
    assert ServerSpec.parse("turn:203.0.113.20:3478") == ServerSpec("203.0.113.20", 3478, "udp")
    assert ServerSpec.parse("turn:203.0.113.20?transport=tcp") == \
        ServerSpec("203.0.113.20", 3478, "tcp")
    assert ServerSpec.parse("turns:turn.example.org") == ServerSpec("turn.example.org", 5349, "tls")
    for bad in ("stun:1.2.3.4:3478", "turn:1.2.3.4:99999", "turn:1.2.3.4?transport=sctp", "turn:"):
        with pytest.raises(ValueError):
            ServerSpec.parse(bad)


def challenge(req, nonce=b"nonce-1", code=401):
    return stun.decode(stun.encode(stun.error_response(
        req, code, "Unauthorized" if code == 401 else "Stale Nonce", REALM=REALM, NONCE=nonce)))


def test_allocation_answers_the_challenge_then_signs_everything():
    creds = Credentials("alice", "pw")
    a = Allocation(creds)
    req = a.allocate_request()
    assert a.state is State.ALLOCATING and a.sign(req) is None    # first try: unsigned
    assert a.on_error(challenge(req), signed=False) is RETRY
    req2 = a.allocate_request()
    key = a.sign(req2)
    assert key == creds.key(REALM)
    wire = stun.decode(stun.encode(req2, key))
    assert stun.check_integrity(wire, creds.key(REALM))
    assert wire.attributes["USERNAME"] == "alice" and wire.attributes["NONCE"] == b"nonce-1"
    ok = stun.Message(stun.Method.ALLOCATE, stun.Class.RESPONSE, req2.transaction_id, {
        "XOR-RELAYED-ADDRESS": ("203.0.113.20", 50000), "XOR-MAPPED-ADDRESS": ("198.51.100.7", 1),
        "LIFETIME": 600})
    resp = stun.decode(stun.encode(ok, key))
    assert a.verify(resp, signed=True)
    forged = stun.decode(stun.encode(ok, b"other key"))
    assert not a.verify(forged, signed=True)
    assert a.on_allocated(resp, now=100.0) == ("203.0.113.20", 50000)
    assert a.state is State.READY and a.refresh_at == 400.0
    perm = a.permission_request(["198.51.100.9"])
    assert a.sign(perm) == key and perm.attributes["XOR-PEER-ADDRESS"] == ("198.51.100.9", 0)


def test_stale_nonce_is_followed_and_wrong_credentials_are_final():
    a = Allocation(Credentials("alice", "wrong"))
    req = a.allocate_request()
    assert a.on_error(challenge(req), signed=False) is RETRY
    req = a.allocate_request()
    a.sign(req)
    assert a.on_error(challenge(req, b"nonce-2", code=438), signed=True) is RETRY
    assert a.nonce == b"nonce-2"
    req = a.allocate_request()
    a.sign(req)
    out = a.on_error(challenge(req, b"nonce-2"), signed=True)   # 401 to a signed request
    assert isinstance(out, Failure) and out.code == 401
    line = str(out)
    assert line == "401 Unauthorized: wrong username or password (or shared secret)"
    assert "wrong" not in a.creds.username and "pw" not in line
    a.fail(out)
    assert a.state is State.FAILED


def test_other_errors_are_one_line():
    a = Allocation(Credentials("u", "p"))
    req = a.allocate_request()
    err = stun.decode(stun.encode(stun.error_response(req, 486, "Allocation Quota Reached")))
    assert str(a.on_error(err, signed=True)) == \
        "486 Allocation Quota Reached: allocation quota reached for this user"


def test_data_indication():
    msg = stun.Message(stun.Method.DATA, stun.Class.INDICATION,
                       attributes={"XOR-PEER-ADDRESS": ("198.51.100.9", 4000), "DATA": b"pkt"})
    assert data_indication(stun.decode(stun.encode(msg))) == (("198.51.100.9", 4000), b"pkt")
    assert data_indication(stun.binding_request()) is None
