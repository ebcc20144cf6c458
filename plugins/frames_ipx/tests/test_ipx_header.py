"""IPX header codec and DOSBox's signalling datagrams."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal_frames_ipx.ipx_header import (
    BROADCAST_NODE,
    IpxAddress,
    IpxHeader,
    MalformedIpx,
    decode,
    encode,
    format_node,
    parse_node,
    ping_reply,
    ping_request,
    registration_reply,
    registration_request,
)

# DOSBox's registration request, byte for byte (ipx.cpp ConnectToServer):
# checksum ffff, length 30, tc 0, type 0, dest 0/0/socket 2, src 0/0/socket 2
GOLDEN_REGISTRATION = bytes.fromhex(
    "ffff001e0000" "00000000" "000000000000" "0002" "00000000" "000000000000" "0002")


def test_registration_request_matches_dosbox():
    assert registration_request() == GOLDEN_REGISTRATION
    h, payload = decode(GOLDEN_REGISTRATION)
    assert h.dest == IpxAddress(socket=2) and h.src == IpxAddress(socket=2)
    assert h.packet_type == 0 and h.length == 30 and payload == b""


def test_registration_reply_carries_the_client_node_in_the_destination():
    client, server = bytes.fromhex("644000020001"), bytes.fromhex("644000020000")
    h, _ = decode(registration_reply(client, server))
    assert h.dest.node == client and h.dest.network == b"\x00" * 4 and h.dest.socket == 2
    assert h.src.node == server and h.src.network == b"\x00\x00\x00\x01" and h.src.socket == 2


def test_ping_and_reply():
    me, other = bytes.fromhex("644000020001"), bytes.fromhex("644000030001")
    h, _ = decode(ping_request(me))
    assert h.is_broadcast and h.dest.socket == 2 and h.src.node == me
    h, _ = decode(ping_reply(me, other))
    assert not h.is_broadcast and h.dest.node == me and h.src.node == other


def test_layout():
    h = IpxHeader(IpxAddress(b"\x00\x00\x00\x07", BROADCAST_NODE, 0x869C),
                  IpxAddress(b"\x00\x00\x00\x07", bytes(range(1, 7)), 0x4000),
                  packet_type=4, transport_control=3)
    d = encode(h, b"DOOM")
    assert d[0:2] == b"\xff\xff" and d[2:4] == (34).to_bytes(2, "big") and d[4] == 3 and d[5] == 4
    assert d[6:10] == b"\x00\x00\x00\x07" and d[10:16] == BROADCAST_NODE and d[16:18] == b"\x86\x9c"
    assert d[22:28] == bytes(range(1, 7)) and d[28:30] == b"\x40\x00" and d[30:] == b"DOOM"


def test_trailing_bytes_ignored_lengths_strict():
    d = encode(IpxHeader(IpxAddress(), IpxAddress()), b"abc")
    h, payload = decode(d + b"\x00" * 20)          # e.g. Ethernet padding
    assert payload == b"abc" and h.length == 33
    for bad in (d[:29], d[:32], d[:2] + (29).to_bytes(2, "big") + d[4:]):
        with pytest.raises(MalformedIpx):
            decode(bad)


def test_nodes_format_and_parse():
    n = bytes.fromhex("6440000203e8")
    assert format_node(n) == "64:40:00:02:03:e8" and parse_node("64:40:00:02:03:e8") == n
    with pytest.raises(ValueError):
        parse_node("64:40")
    with pytest.raises(ValueError):
        IpxAddress(node=b"\x00")


addresses = st.builds(IpxAddress, st.binary(min_size=4, max_size=4),
                      st.binary(min_size=6, max_size=6), st.integers(0, 0xFFFF))


@given(addresses, addresses, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=600))
def test_roundtrip(dst, src, ptype, tc, payload):
    h = IpxHeader(dst, src, ptype, tc)
    h2, p2 = decode(encode(h, payload))
    assert (h2.dest, h2.src, h2.packet_type, h2.transport_control, p2) == (dst, src, ptype, tc,
                                                                            payload)


@given(st.binary(max_size=100))
def test_garbage_is_malformed_or_decodes(data):
    try:
        h, payload = decode(data)
    except MalformedIpx:
        return
    assert 30 <= h.length <= len(data) and len(payload) == h.length - 30
