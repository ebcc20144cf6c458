"""Which interface packets are flooded, and how they are named."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal.testing.fakes import ipv4_packet
from shoal_frames_broadcast.classify import (
    FloodKind,
    directed_broadcast,
    floods_ethernet,
    floods_ip,
    kind_of,
)

SRC = "100.64.0.2"
BRD = directed_broadcast(SRC, 10)


def ipv6_packet(dst: str, src: str = "fd5e:a10::6440:2") -> bytes:
    return (bytes([0x60, 0, 0, 0, 0, 8, 17, 1]) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + b"\x00" * 8)


def eth(dst: str, ethertype: int = 0x0806) -> bytes:
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex("020000000001") \
        + ethertype.to_bytes(2, "big") + b"\x00" * 46


def test_directed_broadcast_of_the_overlay():
    assert BRD == ipaddress.IPv4Address("100.127.255.255").packed
    assert directed_broadcast("10.1.2.3", 24) == bytes([10, 1, 2, 255])
    assert directed_broadcast("10.1.2.3", 31) == b""


@pytest.mark.parametrize("dst,kind", [
    ("255.255.255.255", FloodKind.LIMITED_BROADCAST),
    ("100.127.255.255", FloodKind.DIRECTED_BROADCAST),
    ("224.0.0.1", FloodKind.MULTICAST4),
    ("239.255.255.250", FloodKind.MULTICAST4),
])
def test_ipv4_flooded(dst, kind):
    pkt = ipv4_packet(SRC, dst)
    assert floods_ip(pkt, BRD)
    assert kind_of(pkt, l2=False) is kind


@pytest.mark.parametrize("dst", ["100.64.0.3", "240.0.0.1", "254.255.255.255", "100.64.255.255",
                                 "192.168.1.255", "223.255.255.255"])
def test_ipv4_not_flooded(dst):
    assert not floods_ip(ipv4_packet(SRC, dst), BRD)


def test_directed_broadcast_unknown_until_address_known():
    assert not floods_ip(ipv4_packet(SRC, "100.127.255.255"), b"")


@pytest.mark.parametrize("dst,flooded", [("ff02::1", True), ("ff05::1:3", True),
                                         ("ff0e::1234", True), ("fd5e:a10::6440:3", False),
                                         ("fe80::1", False)])
def test_ipv6(dst, flooded):
    pkt = ipv6_packet(dst)
    assert floods_ip(pkt, BRD) is flooded
    if flooded:
        assert kind_of(pkt, l2=False) is FloodKind.MULTICAST6


def test_ethernet_group_addresses():
    assert floods_ethernet(eth("ff:ff:ff:ff:ff:ff"))
    assert kind_of(eth("ff:ff:ff:ff:ff:ff"), l2=True) is FloodKind.L2_BROADCAST
    for mc in ("33:33:00:00:00:01", "01:00:5e:7f:ff:fa", "09:00:07:ff:ff:ff"):
        assert floods_ethernet(eth(mc))
        assert kind_of(eth(mc), l2=True) is FloodKind.L2_MULTICAST
    assert not floods_ethernet(eth("02:aa:bb:cc:dd:ee"))
    assert not floods_ethernet(b"\xff" * 13)  # runt


@given(st.binary(max_size=80))
def test_never_raises_on_garbage(data):
    floods_ip(data, BRD)
    floods_ethernet(data)
