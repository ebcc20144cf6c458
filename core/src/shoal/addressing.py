"""Overlay addresses derived from what the server assigns: IPv6 and MAC.

Every node's IPv6 overlay address is its IPv4 one inside a fixed ULA /96
(RFC 4193), and its MAC (TAP mode) is locally administered and derived from
its public key, so every peer can compute both without asking anyone.
"""

from __future__ import annotations

import hashlib
import ipaddress

ULA_PREFIX = bytes.fromhex("fd5e0a1000000000000000000000")[:12]  # fd5e:a10::/96
ULA_PREFIX_LEN = 96


def ipv6_for(ipv4: str) -> str:
    return str(ipaddress.IPv6Address(ULA_PREFIX + ipaddress.IPv4Address(ipv4).packed))


def mac_for_key(public_key: bytes) -> bytes:
    """02:xx:xx:xx:xx:xx: unicast, locally administered, stable per key."""
    return b"\x02" + hashlib.blake2s(b"shoal mac" + public_key, digest_size=5).digest()


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
