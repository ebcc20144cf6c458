"""Cutting TSO/USO super-packets into segments, against slowly built golden packets."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shoal.offload import checksum as ck
from shoal.offload import segment, virtio
from shoal.offload.segment import BadSuperPacket, split
from shoal.offload.virtio import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    BadVirtioHeader,
    VirtioNetHdr,
)
from shoal.testing.packets import ip, l4_checksum_ok, naive_sum, tcp, udp, vnet

A4, B4 = "100.64.0.1", "100.64.0.2"
A6, B6 = "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2"
TS_OPTS = b"\x01\x01\x08\x0a" + bytes(range(8))   # NOP NOP timestamps


# ---------------------------------------------------------------- checksum
@given(st.binary(max_size=300))
def test_sum16_matches_the_textbook_loop(data: bytes) -> None:
    assert ck.fold(ck.sum16(data)) % 0xFFFF == naive_sum(data) % 0xFFFF


def test_fold_never_gives_positive_zero_for_data() -> None:
    assert ck.fold(0xFFFF) == 0xFFFF
    assert ck.fold(0) == 0
    assert ck.finish_udp(0xFFFF) == 0xFFFF   # computed 0 goes on the wire as 0xFFFF


@pytest.mark.parametrize("seg_len,count", [(1368, 47), (1400, 3), (1367, 5), (2, 1), (8, 0)])
def test_segment_sums_vectorised_equals_scalar(seg_len: int, count: int) -> None:
    buf = os.urandom(seg_len * count + 7)
    want = [ck.sum16(buf[3 + i * seg_len:3 + (i + 1) * seg_len]) for i in range(count)]
    got = ck.segment_sums(buf, 3, seg_len, count)
    assert [x % 0xFFFF for x in got] == want


# ---------------------------------------------------------------- TCP
def _tcp_super(src: str, dst: str, payload: bytes, mss: int, flags: int = 0x18,
               opts: bytes = TS_OPTS, **kw: object) -> tuple[bytes, int]:
    v6 = ":" in src
    sup = tcp(src, dst, 1000, payload, flags=flags, options=opts, partial=True, **kw)
    ihl = 40 if v6 else 20
    hdr = vnet(F_NEEDS_CSUM, GSO_TCPV6 if v6 else GSO_TCPV4, ihl + 20 + len(opts), mss, ihl, 16)
    return hdr + sup, ihl


def _golden_tcp(src: str, dst: str, payload: bytes, mss: int, flags: int,
                opts: bytes = TS_OPTS, **kw: object) -> list[bytes]:
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)]
    out = []
    for i, c in enumerate(chunks):
        f = flags
        if i < len(chunks) - 1:
            f &= ~(0x01 | 0x08)
        if i:
            f &= ~0x80
        extra = dict(kw)
        if ":" not in src:
            extra["ident"] = (int(extra.get("ident", 0x1234)) + i) & 0xFFFF  # type: ignore[call-overload]
        out.append(tcp(src, dst, (1000 + i * mss) & 0xFFFFFFFF, c, flags=f, options=opts,
                       **extra))
    return out


@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
@pytest.mark.parametrize("plen", [1, 1368, 1369, 5 * 1368, 47 * 1368 - 5, 65535 - 72])
def test_tcp_super_packet_splits_into_golden_segments(src: str, dst: str, plen: int) -> None:
    payload = os.urandom(plen)
    mss = 1368
    read, _ = _tcp_super(src, dst, payload, mss)
    segs = split(read)
    assert segs == _golden_tcp(src, dst, payload, mss, 0x18)
    assert all(l4_checksum_ok(s) for s in segs)
    assert all(len(s) <= 40 + 12 + 1368 + 20 for s in segs)


def test_tcp_flags_fin_psh_only_last_cwr_only_first() -> None:
    read, ihl = _tcp_super(A4, B4, os.urandom(3000), 1000, flags=0x80 | 0x18 | 0x01)
    flags = [s[ihl + 13] for s in split(read)]
    assert flags == [0x80 | 0x10, 0x10, 0x10 | 0x08 | 0x01]


def test_tcp_sequence_wraps_and_ipv4_id_increments() -> None:
    sup = tcp(A4, B4, 0xFFFFFF00, os.urandom(1000), options=b"", partial=True, ident=0xFFFF)
    segs = split(vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 400, 20, 16) + sup)
    seqs = [struct.unpack("!I", s[24:28])[0] for s in segs]
    assert seqs == [0xFFFFFF00, (0xFFFFFF00 + 400) & 0xFFFFFFFF, (0xFFFFFF00 + 800) & 0xFFFFFFFF]
    assert [s[4:6] for s in segs] == [b"\xff\xff", b"\x00\x00", b"\x00\x01"]
    assert all(l4_checksum_ok(s) for s in segs)


def test_tcp_ipv4_options_are_copied_to_every_segment() -> None:
    opts = b"\x94\x04\x00\x00"  # router alert
    payload = os.urandom(2500)
    l4 = tcp(A4, B4, 5, payload, options=TS_OPTS, partial=True)[20:]
    sup = ip(A4, B4, 6, l4, options=opts)
    segs = split(vnet(F_NEEDS_CSUM, GSO_TCPV4, 56, 1000, 24, 16) + sup)
    assert len(segs) == 3
    assert all(s[0] == 0x46 and s[20:24] == opts for s in segs)
    assert all(l4_checksum_ok(s) for s in segs)
    assert b"".join(s[24 + 32:] for s in segs) == payload


def test_gso_ecn_bit_is_accepted() -> None:
    read, _ = _tcp_super(A4, B4, os.urandom(3000), 1368)
    read = read[:1] + bytes([GSO_TCPV4 | virtio.GSO_ECN]) + read[2:]
    assert len(split(read)) == 3


# ---------------------------------------------------------------- UDP (USO)
@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
def test_udp_super_packet_splits_into_golden_datagrams(src: str, dst: str) -> None:
    payload = os.urandom(1200 * 4 + 33)
    sup = udp(src, dst, payload, partial=True)
    ihl = 40 if ":" in src else 20
    segs = split(vnet(F_NEEDS_CSUM, GSO_UDP_L4, ihl + 8, 1200, ihl, 6) + sup)
    want = []
    for i in range(5):
        kw = {} if ":" in src else {"ident": 0x1234 + i}
        want.append(udp(src, dst, payload[i * 1200:(i + 1) * 1200], **kw))  # type: ignore[arg-type]
    assert segs == want
    assert all(l4_checksum_ok(s) for s in segs)


def test_udp_checksum_zero_is_sent_as_ffff() -> None:
    # find a payload whose checksum computes to 0
    for i in range(200000):
        p = i.to_bytes(4, "big")
        full = udp(A4, B4, p)
        if full[26:28] == b"\xff\xff":
            break
    else:
        pytest.skip("no zero-checksum payload found")
    segs = split(vnet(F_NEEDS_CSUM, GSO_UDP_L4, 28, 100, 20, 6) + udp(A4, B4, p, partial=True))
    assert segs[0][26:28] == b"\xff\xff"


# ---------------------------------------------------------------- no GSO
def test_plain_read_is_passed_through() -> None:
    p = tcp(A4, B4, 1, b"abc")
    assert split(vnet() + p) == [p]


@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
def test_needs_csum_single_packet_is_completed(src: str, dst: str) -> None:
    ihl = 40 if ":" in src else 20
    partial = tcp(src, dst, 7, b"hello", flags=0x18, partial=True)
    assert split(vnet(F_NEEDS_CSUM, 0, 0, 0, ihl, 16) + partial) == [tcp(src, dst, 7, b"hello",
                                                                         flags=0x18)]
    partial = udp(src, dst, b"hello", partial=True)
    assert split(vnet(F_NEEDS_CSUM, 0, 0, 0, ihl, 6) + partial) == [udp(src, dst, b"hello")]


# ---------------------------------------------------------------- hostile input
@pytest.mark.parametrize("read", [
    b"", b"\x00" * 9,                                               # shorter than the header
    vnet(0, 2) + tcp(A4, B4, 1, b"x" * 100),                        # unknown gso_type
    vnet(0, virtio.GSO_UDP) + udp(A4, B4, b"x" * 100),              # UFO
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 0, 20, 16) + tcp(A4, B4, 1, b"x" * 100),   # gso_size 0
    vnet(F_NEEDS_CSUM, 0, 0, 0, 100, 16) + tcp(A4, B4, 1, b"x"),   # csum beyond the packet
    vnet(F_NEEDS_CSUM, 0, 0, 0, 3, 0) + tcp(A4, B4, 1, b"x"),      # csum inside the IP header
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + tcp(A4, B4, 1, b"x" * 300)[:30],  # cut TCP
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + tcp(A6, B6, 1, b"x" * 300),  # v6 as v4
    vnet(F_NEEDS_CSUM, GSO_TCPV6, 40, 100, 40, 16) + tcp(A4, B4, 1, b"x" * 300),  # v4 as v6
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + udp(A4, B4, b"x" * 300),     # UDP as TCP
    vnet(F_NEEDS_CSUM, GSO_UDP_L4, 28, 100, 20, 6) + tcp(A4, B4, 1, b"x" * 300),  # TCP as UDP
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 1, 20, 16) + tcp(A4, B4, 1, b"x" * 3000),   # 3000 segments
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + tcp(A4, B4, 1, b"x" * 300)[:19],
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + b"\x4f" + tcp(A4, B4, 1, b"x" * 30)[1:],
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + b"\x41" + tcp(A4, B4, 1, b"x" * 30)[1:],
    vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16)
    + tcp(A4, B4, 1, b"x" * 300)[:32] + b"\xf0" + tcp(A4, B4, 1, b"x" * 300)[33:60],  # offset 60
], ids=lambda r: r[:12].hex())
def test_hostile_or_truncated_reads_raise_bad_super_packet(read: bytes) -> None:
    with pytest.raises(BadVirtioHeader):
        split(read)


def test_fragmented_ipv4_super_packet_is_refused() -> None:
    p = bytearray(tcp(A4, B4, 1, b"x" * 300, partial=True))
    p[6] |= 0x20   # more fragments
    with pytest.raises(BadSuperPacket):
        split(vnet(F_NEEDS_CSUM, GSO_TCPV4, 40, 100, 20, 16) + bytes(p))


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=10, max_size=10), st.binary(max_size=400))
def test_fuzzed_reads_never_crash(header: bytes, body: bytes) -> None:
    try:
        segs = split(header + body)
    except BadVirtioHeader:
        return
    assert all(isinstance(s, bytes) for s in segs)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4]), st.integers(1, 2000),
       st.integers(0, 200), st.binary(max_size=60))
def test_fuzzed_gso_headers_on_real_packets_never_crash(gso: int, size: int, cut: int,
                                                         junk: bytes) -> None:
    base = tcp(A4, B4, 1, os.urandom(3000), partial=True) if gso != GSO_UDP_L4 \
        else udp(A6, B6, os.urandom(3000), partial=True)
    pkt = base[:len(base) - cut] + junk
    try:
        segs = split(vnet(F_NEEDS_CSUM, gso, 40, size, 20, 16) + pkt)
    except BadVirtioHeader:
        return
    assert sum(1 for _ in segs) >= 1


def test_header_codec_round_trip() -> None:
    h = VirtioNetHdr(F_NEEDS_CSUM, GSO_TCPV6, 72, 1348, 40, 16)
    assert VirtioNetHdr.decode(h.encode() + bytes(100)) == h
    assert segment.MAX_SEGMENTS >= 65535 // 88
