import pytest
from hypothesis import given, strategies as st

from shoal import wire


def test_init_roundtrip_and_trailing_kept():
    pkt = wire.encode_init(0xDEADBEEF, b"n" * 100)
    msg = wire.decode_init(pkt)
    assert msg.sender == 0xDEADBEEF and msg.noise == b"n" * 100


def test_resp_roundtrip():
    pkt = wire.encode_resp(1, 2, b"m" * 48)
    msg = wire.decode_resp(pkt)
    assert (msg.sender, msg.receiver, msg.noise) == (1, 2, b"m" * 48)


@pytest.mark.parametrize("pkt", [
    b"", b"\x01", wire.INIT_PREFIX + b"\x00" * 10,           # truncated
    bytes([1, 2, 0, 0]) + b"\x00" * 200,                      # wrong version
    bytes([1, 1, 1, 0]) + b"\x00" * 200,                      # non-zero reserved
])
def test_init_rejects(pkt):
    with pytest.raises(wire.MalformedPacket):
        wire.decode_init(pkt)


@given(st.binary(max_size=300))
def test_decoders_never_crash(data):
    for dec in (wire.decode_init, wire.decode_resp):
        try:
            dec(data)
        except wire.MalformedPacket:
            pass


def test_data_header_layout():
    h = wire.DATA_HEADER.pack(wire.TYPE_DATA, wire.VERSION, 0, 0x01020304, 7)
    assert h[:4] == wire.DATA_PREFIX
    assert h[4:8] == bytes([4, 3, 2, 1])
    assert int.from_bytes(h[8:16], "little") == 7
