"""Independent, slow builders of IP/TCP/UDP packets for the offload tests.

Checksums here are the textbook word loop of RFC 1071, so the fast code in
``shoal.offload`` is checked against a second implementation.
"""

from __future__ import annotations

import ipaddress
import struct

from shoal.offload import virtio


def naive_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def naive_csum(data: bytes) -> int:
    return ~naive_sum(data) & 0xFFFF


def _addr(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = _addr(src), _addr(dst)
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!IxxxB", length, proto)


def ip(src: str, dst: str, proto: int, l4: bytes, ident: int = 0x1234, ttl: int = 64,
       tos: int = 0, df: bool = True, options: bytes = b"") -> bytes:
    s, d = _addr(src), _addr(dst)
    if len(s) == 16:
        return struct.pack("!IHBB", 0x60000000 | tos << 20, len(l4), proto, ttl) + s + d + l4
    ihl = 20 + len(options)
    h = struct.pack("!BBHHHBBH", 0x40 | ihl // 4, tos, ihl + len(l4), ident,
                    0x4000 if df else 0, ttl, proto, 0) + s + d + options
    h = h[:10] + struct.pack("!H", naive_csum(h)) + h[12:]
    return h + l4


def tcp(src: str, dst: str, seq: int, payload: bytes = b"", flags: int = 0x10,
        ack: int = 0x01020304, sport: int = 40000, dport: int = 5201, options: bytes = b"",
        window: int = 502, partial: bool = False, **ipkw: object) -> bytes:
    """A TCP packet; ``partial`` leaves the pseudo-header sum in the checksum, as TSO does."""
    off = (20 + len(options)) // 4
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0) + options
    ps = pseudo(src, dst, 6, len(h) + len(payload))
    if partial:
        c = naive_sum(ps)
    else:
        c = naive_csum(ps + h + payload)
    h = h[:16] + struct.pack("!H", c) + h[18:]
    return ip(src, dst, 6, h + payload, **ipkw)  # type: ignore[arg-type]


def udp(src: str, dst: str, payload: bytes, sport: int = 40000, dport: int = 5201,
        partial: bool = False, length: int | None = None, **ipkw: object) -> bytes:
    n = 8 + len(payload) if length is None else length
    h = struct.pack("!HHHH", sport, dport, n, 0)
    ps = pseudo(src, dst, 17, n)
    c = naive_sum(ps) if partial else (naive_csum(ps + h + payload) or 0xFFFF)
    h = h[:6] + struct.pack("!H", c)
    return ip(src, dst, 17, h + payload, **ipkw)  # type: ignore[arg-type]


def l4_checksum_ok(pkt: bytes) -> bool:
    """Verify the TCP/UDP checksum of a complete packet with the slow loop."""
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        src, dst, proto = pkt[12:16], pkt[16:20], pkt[9]
        assert naive_sum(pkt[:ihl]) == 0xFFFF, "IPv4 header checksum"
        assert int.from_bytes(pkt[2:4], "big") == len(pkt), "IPv4 total length"
        ps = src + dst + struct.pack("!BBH", 0, proto, len(pkt) - ihl)
    else:
        ihl = 40
        src, dst, proto = pkt[8:24], pkt[24:40], pkt[6]
        assert int.from_bytes(pkt[4:6], "big") == len(pkt) - 40, "IPv6 payload length"
        ps = src + dst + struct.pack("!IxxxB", len(pkt) - ihl, proto)
    return naive_sum(ps + pkt[ihl:]) == 0xFFFF


def vnet(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return virtio.encode(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
