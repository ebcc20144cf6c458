"""IPX in its four Ethernet framings."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal_frames_ipx.framing import IpxFraming, classify, frame_ipx, ipx_payload
from shoal_frames_ipx.ipx_header import BROADCAST_NODE, IpxAddress, IpxHeader, decode, encode

SRC = bytes.fromhex("02a1b2c3d4e5")
SAP = encode(IpxHeader(IpxAddress(node=BROADCAST_NODE, socket=0x452),
                       IpxAddress(node=SRC, socket=0x452), packet_type=4), b"\x00\x01" + b"x" * 20)


@pytest.mark.parametrize("framing", list(IpxFraming))
def test_each_framing_is_recognised_and_unwrapped(framing):
    frame = frame_ipx(framing, BROADCAST_NODE, SRC, SAP)
    assert classify(frame) is framing
    h, _ = decode(ipx_payload(frame))
    assert h.dest.socket == 0x452 and h.src.node == SRC


def test_golden_header_bytes():
    assert frame_ipx(IpxFraming.ETHERNET_II, BROADCAST_NODE, SRC, SAP)[12:14] == b"\x81\x37"
    raw = frame_ipx(IpxFraming.RAW_802_3, BROADCAST_NODE, SRC, SAP)
    assert raw[12:14] == len(SAP).to_bytes(2, "big") and raw[14:16] == b"\xff\xff"
    assert frame_ipx(IpxFraming.LLC_802_2, BROADCAST_NODE, SRC, SAP)[14:17] == b"\xe0\xe0\x03"
    assert frame_ipx(IpxFraming.SNAP, BROADCAST_NODE, SRC, SAP)[14:22] == \
        bytes.fromhex("aaaa030000008137")


@pytest.mark.parametrize("frame", [
    BROADCAST_NODE + SRC + b"\x08\x06" + b"\x00" * 28,                 # ARP
    BROADCAST_NODE + SRC + b"\x08\x00" + b"\x45" + b"\x00" * 40,        # IPv4
    bytes.fromhex("0180c2000000") + SRC + b"\x00\x26" + b"\x42\x42\x03" + b"\x00" * 35,  # STP
    BROADCAST_NODE + SRC + b"\x00\x30" + bytes.fromhex("aaaa03000000") + b"\x08\x00" + b"\x00" * 30,
    BROADCAST_NODE + SRC + b"\x81",                                    # runt
])
def test_other_frames_are_not_ipx(frame):
    assert classify(frame) is None and ipx_payload(frame) is None


@given(st.binary(max_size=64))
def test_never_raises(data):
    classify(data)
