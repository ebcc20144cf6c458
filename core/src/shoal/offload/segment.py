"""Cut a super-packet read from a TUN (TSO/USO) into tunnel-sized IP packets.

With TUNSETOFFLOAD the kernel hands the TUN reader TCP and UDP super-packets
of up to 64 KB (one IP header, one TCP/UDP header, ``gso_size``-byte payload
chunks) and leaves L4 checksums partial. Every segment goes out in its own
independently sealed datagram, so the receiving node may be one without
offloads: each segment produced here is a complete IP packet with correct
lengths, IPv4 identification and header checksum, TCP sequence number and
flags, and a complete TCP/UDP checksum, exactly as the kernel's software GSO
would have cut it (net/ipv4/tcp_offload.c ``tcp_gso_segment``,
net/ipv4/udp_offload.c ``__udp_gso_segment``).

Why our own code: no maintained Python library segments virtio-net
super-packets; the job is small and fully specified by the kernel's behaviour.

Rules it obeys:

* Inputs come from the local kernel but are parsed strictly; an inconsistent
  header or packet raises ``BadSuperPacket`` (a ``BadVirtioHeader``) and the
  caller drops and counts it. Nothing here trusts ``hdr_len``/``csum_start``;
  header lengths are read from the IP and TCP headers themselves.
* TCP: CWR only on the first segment, FIN and PSH only on the last; IPv4
  identification increments per segment; options copied to every segment.
* IPv6 extension headers and IPv4 fragments are not offloaded by the kernel
  to a TUN; they are rejected here.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from shoal.offload import checksum as ck
from shoal.offload.virtio import (
    F_NEEDS_CSUM,
    GSO_NONE,
    GSO_TCPV6,
    GSO_UDP_L4,
    LEN,
    BadVirtioHeader,
    VirtioNetHdr,
)

#: A bound on the segments of one super-packet (64 KB at TCP's minimum MSS of 88).
MAX_SEGMENTS = 1024

TCP_FIN = 0x01
TCP_PSH = 0x08
TCP_CWR = 0x80

_V4_20 = struct.Struct("!2sHH4sH8s")     # ver/ihl+tos, total, id, frag+ttl+proto, csum, addrs
_V6 = struct.Struct("!4sH34s")           # ver/tc/flow, payload length, rest
_UDP = struct.Struct("!4sHH")            # ports, length, checksum
_U16 = struct.Struct("!H")


class BadSuperPacket(BadVirtioHeader):
    """A super-packet that cannot be segmented; drop it."""


def split(read: bytes) -> list[bytes]:
    """Turn one TUN read (virtio header + packet) into complete IP packets."""
    h = VirtioNetHdr.decode(read)
    g = h.gso
    if g == GSO_NONE:
        pkt = read[LEN:]
        if h.flags & F_NEEDS_CSUM:
            return [complete_checksum(pkt, h.csum_start, h.csum_offset)]
        return [pkt]
    if g == GSO_UDP_L4:
        return split_udp(memoryview(read)[LEN:], h.gso_size)
    return split_tcp(memoryview(read)[LEN:], h.gso_size, g == GSO_TCPV6)


def complete_checksum(pkt: bytes, csum_start: int, csum_offset: int) -> bytes:
    """Finish a partial L4 checksum (NEEDS_CSUM) in a single packet."""
    pos = csum_start + csum_offset
    if pos + 2 > len(pkt) or csum_start < 20:
        raise BadSuperPacket("checksum position outside the packet")
    total = ck.sum16(memoryview(pkt)[csum_start:])
    value = ck.finish_udp(total) if csum_offset == 6 else ck.finish(total)
    return pkt[:pos] + _U16.pack(value) + pkt[pos + 2:]


def _l3(pkt: Any, proto: int, want_v6: bool | None) -> tuple[int, bool]:
    """IP header length and family of a super-packet carrying ``proto``."""
    n = len(pkt)
    v = pkt[0] >> 4 if n else 0
    if v == 4 and want_v6 is not True:
        ihl = (pkt[0] & 0x0F) * 4
        if ihl < 20 or n < ihl:
            raise BadSuperPacket("truncated or bad IPv4 header")
        if pkt[9] != proto:
            raise BadSuperPacket(f"IPv4 super-packet of protocol {pkt[9]}, expected {proto}")
        if pkt[6] & 0x3F or pkt[7]:
            raise BadSuperPacket("fragmented IPv4 super-packet")
        return ihl, False
    if v == 6 and want_v6 is not False:
        if n < 40:
            raise BadSuperPacket("truncated IPv6 header")
        if pkt[6] != proto:
            raise BadSuperPacket("IPv6 super-packet with extension headers or another protocol")
        return 40, True
    raise BadSuperPacket(f"super-packet of IP version {v} does not match its gso_type")


def _ip_header_fn(pkt: Any, ihl: int, v6: bool) -> tuple[Any, int]:
    """A function (l3_payload_len, index) -> IP header bytes, and the IPv4 base sum."""
    if v6:
        head, rest = bytes(pkt[0:4]), bytes(pkt[6:40])

        def v6_header(l3_len: int, i: int) -> bytes:
            return _V6.pack(head, l3_len, rest)
        return v6_header, 0
    a, mid, tail = bytes(pkt[0:2]), bytes(pkt[6:10]), bytes(pkt[12:ihl])
    id0 = int.from_bytes(pkt[4:6], "big")
    base = ck.sum16(a) + ck.sum16(mid) + ck.sum16(tail)
    fin = ck.finish
    if ihl == 20:
        pack = _V4_20.pack

        def v4_header(l3_len: int, i: int) -> bytes:
            tot = l3_len + 20
            ident = (id0 + i) & 0xFFFF
            return pack(a, tot, ident, mid, fin(base + tot + ident), tail)
        return v4_header, base

    def v4_options_header(l3_len: int, i: int) -> bytes:
        tot = l3_len + ihl
        ident = (id0 + i) & 0xFFFF
        return a + struct.pack("!HH", tot, ident) + mid + _U16.pack(fin(base + tot + ident)) + tail
    return v4_options_header, base


def _payload_sums(pkt: Any, start: int, size: int, full: int, rem: int) -> list[int]:
    sums = ck.segment_sums(pkt, start, size, full)
    if rem:
        sums.append(ck.sum16(pkt[start + full * size:]))
    return sums


def split_tcp(pkt: Any, mss: int, v6: bool) -> list[bytes]:
    """Segment a TCP super-packet (memoryview of the IP packet) into ``mss``-byte payloads."""
    n = len(pkt)
    ihl, v6 = _l3(pkt, ck.PROTO_TCP, v6)
    if n < ihl + 20:
        raise BadSuperPacket("truncated TCP header")
    thl = (pkt[ihl + 12] >> 4) * 4
    if thl < 20 or n < ihl + thl:
        raise BadSuperPacket("bad TCP data offset")
    hl = ihl + thl
    plen = n - hl
    full, rem = divmod(plen, mss)
    count = full + (1 if rem else 0)
    if count > MAX_SEGMENTS:
        raise BadSuperPacket(f"super-packet of {count} segments")
    if count == 0:  # no payload: one segment, checksum completed below
        count, full, rem = 1, 0, 0
    t = ihl
    ports, ack, off = bytes(pkt[t:t + 4]), bytes(pkt[t + 8:t + 12]), pkt[t + 12]
    win, urg, opts = bytes(pkt[t + 14:t + 16]), bytes(pkt[t + 18:t + 20]), bytes(pkt[t + 20:hl])
    flags0 = pkt[t + 13]
    seq0 = int.from_bytes(pkt[t + 4:t + 8], "big")
    alen = 16 if v6 else 4
    src_at = 8 if v6 else 12
    base = (ck.pseudo_sum(pkt[src_at:src_at + alen], pkt[src_at + alen:src_at + 2 * alen],
                          ck.PROTO_TCP)
            + ck.sum16(ports) + ck.sum16(ack) + (off << 8) + ck.sum16(win) + ck.sum16(urg)
            + ck.sum16(opts))
    sums = _payload_sums(pkt, hl, mss, full, rem) if plen else [0]
    mid_flags = flags0 & ~(TCP_FIN | TCP_PSH | TCP_CWR)
    last = count - 1
    pack = _header_struct(ihl, thl, v6).pack
    out = []
    at = hl
    # One pack per segment builds the whole IP + TCP header; checksums are folded
    # inline (a sum over a pseudo-header is never 0, so fold(x) = x % 0xFFFF or 0xFFFF).
    if v6:
        head, rest = bytes(pkt[0:4]), bytes(pkt[6:40])
        for i in range(count):
            end = at + mss if i < last else n
            seq = (seq0 + i * mss) & 0xFFFFFFFF
            flags = mid_flags if i < last else flags0 & ~TCP_CWR
            if i == 0:
                flags |= flags0 & TCP_CWR
            tcp_len = thl + end - at
            c = 0xFFFF - ((base + tcp_len + (seq >> 16) + (seq & 0xFFFF) + flags + sums[i])
                          % 0xFFFF or 0xFFFF)
            out.append(pack(head, tcp_len, rest, ports, seq, ack, off, flags, win, c, urg, opts)
                       + pkt[at:end])
            at = end
        return out
    a, mid, tail = bytes(pkt[0:2]), bytes(pkt[6:10]), bytes(pkt[12:ihl])
    id0 = int.from_bytes(pkt[4:6], "big")
    ip_base = ck.sum16(a) + ck.sum16(mid) + ck.sum16(tail)
    for i in range(count):
        end = at + mss if i < last else n
        seq = (seq0 + i * mss) & 0xFFFFFFFF
        flags = mid_flags if i < last else flags0 & ~TCP_CWR
        if i == 0:
            flags |= flags0 & TCP_CWR
        tcp_len = thl + end - at
        tot = tcp_len + ihl
        ident = (id0 + i) & 0xFFFF
        ipc = 0xFFFF - ((ip_base + tot + ident) % 0xFFFF or 0xFFFF)
        c = 0xFFFF - ((base + tcp_len + (seq >> 16) + (seq & 0xFFFF) + flags + sums[i])
                      % 0xFFFF or 0xFFFF)
        out.append(pack(a, tot, ident, mid, ipc, tail, ports, seq, ack, off, flags, win, c, urg,
                        opts) + pkt[at:end])
        at = end
    return out


@functools.lru_cache(maxsize=64)
def _header_struct(ihl: int, thl: int, v6: bool) -> struct.Struct:
    """IP + TCP header layout: IPv4 (with options as one field) or IPv6, TCP options last."""
    ip = "4sH34s" if v6 else f"2sHH4sH{ihl - 12}s"
    return struct.Struct(f"!{ip}4sI4sBB2sH2s{thl - 20}s")


def split_udp(pkt: Any, size: int) -> list[bytes]:
    """Segment a UDP super-packet (USO) into datagrams of ``size``-byte payloads."""
    n = len(pkt)
    ihl, v6 = _l3(pkt, ck.PROTO_UDP, None)
    hl = ihl + 8
    if n < hl:
        raise BadSuperPacket("truncated UDP header")
    plen = n - hl
    full, rem = divmod(plen, size)
    count = full + (1 if rem else 0)
    if count > MAX_SEGMENTS:
        raise BadSuperPacket(f"super-packet of {count} segments")
    if count == 0:
        count = 1
    ip_header, _ = _ip_header_fn(pkt, ihl, v6)
    ports = bytes(pkt[ihl:ihl + 4])
    alen = 16 if v6 else 4
    src_at = 8 if v6 else 12
    base = ck.pseudo_sum(pkt[src_at:src_at + alen], pkt[src_at + alen:src_at + 2 * alen],
                         ck.PROTO_UDP) + ck.sum16(ports)
    sums = _payload_sums(pkt, hl, size, full, rem) if plen else [0]
    fin = ck.finish_udp
    out = []
    at = hl
    for i in range(count):
        end = min(at + size, n)
        ulen = 8 + end - at
        c = fin(base + 2 * ulen + sums[i])
        out.append(ip_header(ulen, i) + _UDP.pack(ports, ulen, c) + pkt[at:end])
        at = end
    return out
