import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal import wire

MACS = b"1" * 16 + b"2" * 16


def test_init_roundtrip_macs_split_off():
    pkt = wire.encode_init(0xDEADBEEF, b"n" * 100) + MACS
    msg = wire.decode_init(pkt)
    assert msg.sender == 0xDEADBEEF and msg.noise == b"n" * 100 and msg.packet == pkt


def test_resp_roundtrip():
    pkt = wire.encode_resp(1, 2, b"m" * 48) + MACS
    msg = wire.decode_resp(pkt)
    assert (msg.sender, msg.receiver, msg.noise) == (1, 2, b"m" * 48)


def test_version_2_on_every_type():
    for prefix in (wire.INIT_PREFIX, wire.RESP_PREFIX, wire.COOKIE_PREFIX, wire.DATA_PREFIX):
        assert prefix[1] == 2


def test_version_1_initiation_is_malformed():
    old = bytes([1, 1, 0, 0]) + b"\x00" * 200
    with pytest.raises(wire.MalformedPacket):
        wire.decode_init(old)


def test_cookie_reply_receiver():
    pkt = wire.encode_cookie_reply(0x01020304, b"\x00" * 44)
    assert len(pkt) == wire.COOKIE_REPLY_LEN
    assert wire.decode_cookie_receiver(pkt) == 0x01020304
    with pytest.raises(wire.MalformedPacket):
        wire.decode_cookie_receiver(pkt[:-1])


@pytest.mark.parametrize("pkt", [
    b"", b"\x01", wire.INIT_PREFIX + b"\x00" * 10,           # truncated
    bytes([1, 1, 0, 0]) + b"\x00" * 200,                      # wrong version
    wire.INIT_PREFIX + b"\x00" * (4 + 96 + 31),             # no room for both MACs
    bytes([1, 2, 1, 0]) + b"\x00" * 200,                      # non-zero reserved
])
def test_init_rejects(pkt):
    with pytest.raises(wire.MalformedPacket):
        wire.decode_init(pkt)


@given(st.binary(max_size=300))
def test_decoders_never_crash(data):
    for dec in (wire.decode_init, wire.decode_resp, wire.decode_cookie_receiver):
        try:
            dec(data)
        except wire.MalformedPacket:
            pass


def test_data_header_layout():
    h = wire.DATA_HEADER.pack(wire.TYPE_DATA, wire.VERSION, 0, 0x01020304, 7)
    assert h[:4] == wire.DATA_PREFIX
    assert h[4:8] == bytes([4, 3, 2, 1])
    assert int.from_bytes(h[8:16], "little") == 7
