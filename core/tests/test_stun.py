"""STUN codec: RFC 5769 test vectors as golden packets, every attribute Shoal uses, fuzzing."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal import stun, wire

DATA = Path(__file__).parent / "data" / "rfc5769"
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"   # RFC 5769 §2
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def golden(name: str) -> bytes:
    return (DATA / f"{name}.bin").read_bytes()


def test_sample_request():
    data = golden("sample-request")
    assert stun.is_stun(data)
    m = stun.decode(data)
    assert (m.message_method, m.message_class) == (stun.Method.BINDING, stun.Class.REQUEST)
    assert m.transaction_id == TXID
    assert m.attributes["SOFTWARE"] == "STUN test client"
    assert m.attributes["PRIORITY"] == 0x6E0001FF
    assert m.attributes["ICE-CONTROLLED"] == 0x932FF9B151263B36
    assert m.attributes["USERNAME"] == "evtj:h6vY"
    assert stun.check_integrity(m, SHORT_TERM_PASSWORD)
    assert not stun.check_integrity(m, b"wrong password")


@pytest.mark.parametrize("name,mapped", [
    ("ipv4-response", ("192.0.2.1", 32853)),
    ("ipv6-response", ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
])
def test_sample_responses(name, mapped):
    data = golden(name)
    m = stun.decode(data)
    assert (m.message_method, m.message_class) == (stun.Method.BINDING, stun.Class.RESPONSE)
    assert m.attributes["SOFTWARE"] == "test vector"
    assert stun.BindingAnswer.from_message(m).mapped == mapped
    assert stun.check_integrity(m, SHORT_TERM_PASSWORD)
    # Encoding the same content reproduces the vector's XOR-MAPPED-ADDRESS bytes, and the
    # whole message verifies (the vector pads SOFTWARE with spaces, the codec with zeros).
    ours = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, TXID,
                        {"SOFTWARE": "test vector", "XOR-MAPPED-ADDRESS": mapped})
    out = stun.encode(ours, SHORT_TERM_PASSWORD)
    xma = data[data.index(b"\x00\x20\x00"):][:4 + data[data.index(b"\x00\x20\x00") + 3]]
    assert xma in out
    assert len(out) == len(data)
    again = stun.decode(out)
    assert stun.check_integrity(again, SHORT_TERM_PASSWORD)
    assert again.attributes["FINGERPRINT"] != m.attributes["FINGERPRINT"] or out == data


def test_long_term_credentials_request():
    m = stun.decode(golden("long-term-request"))
    user = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    assert m.attributes["USERNAME"] == user
    assert m.attributes["REALM"] == "example.org"
    assert m.attributes["NONCE"] == b"f//499k954d6OL34oL9FSTvy64sA"
    assert "FINGERPRINT" not in m.attributes
    key = stun.long_term_key(user, "example.org", "TheMatrIX")   # password after SASLprep
    assert stun.check_integrity(m, key)
    assert not stun.check_integrity(m, stun.long_term_key(user, "example.org", "TheMatrix"))


def test_fingerprint_is_checked():
    data = bytearray(golden("ipv4-response"))
    data[30] ^= 0x01   # inside SOFTWARE
    with pytest.raises(stun.StunError, match="fingerprint"):
        stun.decode(bytes(data))


def test_integrity_detects_tampering_without_fingerprint():
    data = bytearray(golden("long-term-request"))
    data[-30] ^= 0x01  # inside REALM, covered by MESSAGE-INTEGRITY
    m = stun.decode(bytes(data))
    key = stun.long_term_key(m.attributes["USERNAME"], "example.org", "TheMatrIX")
    assert not stun.check_integrity(m, key)


ATTRIBUTES = {
    "MAPPED-ADDRESS": ("198.51.100.7", 40000),
    "XOR-MAPPED-ADDRESS": ("198.51.100.7", 40000),
    "CHANGE-REQUEST": stun.CHANGE_IP | stun.CHANGE_PORT,
    "RESPONSE-ORIGIN": ("203.0.113.11", 3479),
    "OTHER-ADDRESS": ("203.0.113.11", 3479),
    "RESPONSE-PORT": 5000,
    "PADDING": b"\x00" * 8,
    "USERNAME": "1700000000:alice",
    "REALM": "shoal.test",
    "NONCE": b"abcdef0123456789",
    "SOFTWARE": "shoal",
    "LIFETIME": 600,
    "REQUESTED-TRANSPORT": stun.UDP_TRANSPORT,
    "XOR-PEER-ADDRESS": ("203.0.113.102", 41641),
    "XOR-RELAYED-ADDRESS": ("203.0.113.20", 50000),
    "DATA": b"\x04\x01\x00\x00payload",
    "CHANNEL-NUMBER": 0x4001,
}


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
def test_every_attribute_roundtrips(name):
    value = ATTRIBUTES[name]
    msg = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST, TXID, {name: value})
    out = stun.decode(stun.encode(msg))
    assert out.attributes[name] == value


def test_error_response_roundtrip():
    req = stun.binding_request(stun.CHANGE_IP)
    err = stun.error_response(req, 420, "Unknown Attribute", UNKNOWN_ATTRIBUTES=[3, 0x7F00])
    m = stun.decode(stun.encode(err))
    assert m.message_class == stun.Class.ERROR and m.transaction_id == req.transaction_id
    assert stun.error_of(m) == (420, "Unknown Attribute")
    assert m.attributes["UNKNOWN-ATTRIBUTES"] == [3, 0x7F00]
    auth = stun.error_response(stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST), 401,
                               "Unauthorized", REALM="shoal.test", NONCE=b"n" * 16)
    m = stun.decode(stun.encode(auth))
    assert stun.error_of(m) == (401, "Unauthorized") and m.attributes["REALM"] == "shoal.test"


def test_unknown_comprehension_required_attributes():
    msg = stun.binding_request()
    data = bytearray(stun.encode(msg, fingerprint=False))
    data += b"\x7f\x00\x00\x04abcd" + b"\xc0\x01\x00\x00"  # one required, one optional
    data[2:4] = (len(data) - 20).to_bytes(2, "big")
    assert stun.unknown_required(bytes(data)) == [0x7F00]
    assert stun.decode(bytes(data)).transaction_id == msg.transaction_id


def test_shoal_packets_are_never_stun():
    idx = int.from_bytes(stun.COOKIE, "little")  # even an index equal to the cookie
    for prefix in (wire.INIT_PREFIX, wire.RESP_PREFIX, wire.COOKIE_PREFIX, wire.DATA_PREFIX,
                   bytes((5, 1, 0, 0))):
        for size in (21, 24, 32, 48, 96, 148, 1420):  # none is as short as 20 bytes
            pkt = prefix + idx.to_bytes(4, "little") + bytes(size - 8)
            assert not stun.is_stun(pkt)


@given(st.binary(max_size=200))
def test_decoder_never_crashes(data):
    try:
        stun.decode(data)
    except stun.StunError:
        pass


@given(st.integers(0, 0x3FFF), st.binary(max_size=160))
def test_decoder_never_crashes_on_framed_garbage(mtype, body):
    body = body[: len(body) // 4 * 4]
    data = mtype.to_bytes(2, "big") + len(body).to_bytes(2, "big") + stun.COOKIE + TXID + body
    try:
        m = stun.decode(data)
    except stun.StunError:
        return
    stun.error_of(m)
    list(stun.attribute_types(data))
