"""Which interface packets are flooded to the network, and what kind they are.

Pure functions over the bytes the engine read from the interface. The checks
the data path runs per packet (``floods_ip``, ``floods_ethernet``) are a few
byte comparisons; ``kind_of`` names the class for the counters and is only
called for packets that are flooded anyway.

TUN mode (an IP packet, no link header)::

    IPv4: byte 0 = 0x4_, destination at bytes 16..20
          255.255.255.255            limited broadcast (RFC 919)
          <overlay broadcast>        directed broadcast of the overlay prefix, e.g.
                                     100.127.255.255 for 100.64.0.0/10 (RFC 919 §7)
          224.0.0.0/4                multicast (RFC 5771)
    IPv6: byte 0 = 0x6_, destination at bytes 24..40
          ff00::/8                   multicast (RFC 4291 §2.7)

TAP mode (an Ethernet frame)::

    destination MAC at bytes 0..6; the I/G bit (bit 0 of byte 0) set means a
    group address: ff:ff:ff:ff:ff:ff is broadcast (ARP requests, IPX SAP/RIP,
    game discovery), anything else multicast (33:33:.. IPv6, 01:00:5e:.. IPv4).
"""

from __future__ import annotations

import ipaddress
from enum import Enum

ALL_ONES4 = b"\xff\xff\xff\xff"
BROADCAST_MAC = b"\xff\xff\xff\xff\xff\xff"


class FloodKind(Enum):
    LIMITED_BROADCAST = "broadcast"
    DIRECTED_BROADCAST = "directed_broadcast"
    MULTICAST4 = "multicast4"
    MULTICAST6 = "multicast6"
    L2_BROADCAST = "l2_broadcast"
    L2_MULTICAST = "l2_multicast"


def directed_broadcast(address: str, prefix_len: int) -> bytes:
    """The packed directed broadcast address of ``address/prefix_len`` (b"" for /31, /32)."""
    if prefix_len >= 31:
        return b""
    net = ipaddress.IPv4Network(f"{address}/{prefix_len}", strict=False)
    return net.broadcast_address.packed


def floods_ip(pkt: bytes, directed: bytes) -> bool:
    """True if an IP packet from a TUN interface goes to every peer of the network.

    ``directed`` is the packed overlay broadcast address (b"" when not known yet).
    """
    v = pkt[0] >> 4 if pkt else 0
    if v == 4:
        if len(pkt) < 20:
            return False
        first = pkt[16]
        if 224 <= first < 240:
            return True
        dst = pkt[16:20]
        return dst == ALL_ONES4 or dst == directed
    if v == 6:
        return len(pkt) >= 40 and pkt[24] == 0xFF
    return False


def floods_ethernet(frame: bytes) -> bool:
    """True if an Ethernet frame from a TAP interface goes to every peer (group address)."""
    return len(frame) >= 14 and bool(frame[0] & 1)


def kind_of(pkt: bytes, l2: bool) -> FloodKind:
    """Name the class of a packet that ``floods_ip``/``floods_ethernet`` accepted."""
    if l2:
        return FloodKind.L2_BROADCAST if pkt[0:6] == BROADCAST_MAC else FloodKind.L2_MULTICAST
    if pkt[0] >> 4 == 6:
        return FloodKind.MULTICAST6
    if 224 <= pkt[16] < 240:
        return FloodKind.MULTICAST4
    if pkt[16:20] == ALL_ONES4:
        return FloodKind.LIMITED_BROADCAST
    return FloodKind.DIRECTED_BROADCAST
