"""Receive-side coalescing: segments of a flow become one super-packet with a virtio header."""

from __future__ import annotations

import os

import pytest
from shoal.offload import checksum as ck
from shoal.offload.coalesce import Coalescer
from shoal.offload.segment import split
from shoal.offload.virtio import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    LEN,
    PLAIN,
    VirtioNetHdr,
)
from shoal.testing.packets import naive_sum, tcp, udp

A4, B4 = "100.64.0.1", "100.64.0.2"
A6, B6 = "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2"
TS = b"\x01\x01\x08\x0a" + bytes(range(8))


def segments(src: str, dst: str, n: int, mss: int = 1368, seq: int = 1000, last: int | None = None,
             flags: int = 0x10, sport: int = 40000, **kw: object) -> list[bytes]:
    out = []
    for i in range(n):
        size = last if last is not None and i == n - 1 else mss
        out.append(tcp(src, dst, seq + i * mss, os.urandom(size), flags=flags, options=TS,
                       sport=sport, ident=0x100 + i if ":" not in src else 0, **kw))
    return out


def run(pkts: list[bytes], udp_ok: bool = False) -> list[bytes]:
    c = Coalescer(udp=udp_ok)
    for p in pkts:
        c.add(p)
    return c.flush()


def resegment(write: bytes) -> list[bytes]:
    """What the kernel's GSO would make of a write (checked with our own splitter)."""
    h = VirtioNetHdr.decode(write)
    if h.gso_type == 0:
        assert h.flags == 0
        return [write[LEN:]]
    return split(write)


@pytest.mark.parametrize("src,dst,gso", [(A4, B4, GSO_TCPV4), (A6, B6, GSO_TCPV6)])
def test_consecutive_segments_become_one_super_packet(src: str, dst: str, gso: int) -> None:
    segs = segments(src, dst, 10, last=500)
    out = run(segs)
    assert len(out) == 1
    h = VirtioNetHdr.decode(out[0])
    ihl = 40 if gso == GSO_TCPV6 else 20
    assert (h.flags, h.gso_type, h.hdr_len, h.gso_size, h.csum_start, h.csum_offset) == \
        (F_NEEDS_CSUM, gso, ihl + 32, 1368, ihl, 16)
    sup = out[0][LEN:]
    assert sup[ihl + 32:] == b"".join(s[ihl + 32:] for s in segs)
    if gso == GSO_TCPV4:
        assert naive_sum(sup[:20]) == 0xFFFF and int.from_bytes(sup[2:4], "big") == len(sup)
    else:
        assert int.from_bytes(sup[4:6], "big") == len(sup) - 40
    # the checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL)
    alen = 16 if gso == GSO_TCPV6 else 4
    at = 8 if gso == GSO_TCPV6 else 12
    want = ck.fold(ck.pseudo_sum(sup[at:at + alen], sup[at + alen:at + 2 * alen], 6)
                   + len(sup) - ihl)
    assert int.from_bytes(sup[ihl + 16:ihl + 18], "big") == want
    # and the kernel's segmentation gives back exactly the packets that arrived (v4: the ids
    # of the originals increment too)
    assert resegment(out[0]) == segs


def test_psh_ends_a_group_and_is_kept() -> None:
    segs = segments(A4, B4, 3)
    segs[1] = tcp(A4, B4, 1000 + 1368, segs[1][52:], flags=0x18, options=TS, ident=0x101)
    out = run(segs + segments(A4, B4, 1, seq=1000 + 3 * 1368))
    assert len(out) == 2
    assert out[0][LEN + 33] == 0x18          # PSH on the coalesced header
    assert resegment(out[0]) == segs[:2]


def test_shorter_segment_ends_a_group() -> None:
    a = segments(A4, B4, 3, last=100)
    b = segments(A4, B4, 2, seq=1000 + 2 * 1368 + 100)
    out = run(a + b)
    assert len(out) == 2 and resegment(out[0]) == a and resegment(out[1]) == b


def test_gap_in_sequence_starts_a_new_group_in_arrival_order() -> None:
    a = segments(A4, B4, 2)
    b = segments(A4, B4, 2, seq=1000 + 5 * 1368)
    out = run(a + b)
    assert [resegment(o) for o in out] == [a, b]


def test_flows_interleaved_coalesce_separately_and_keep_first_arrival_order() -> None:
    a = segments(A4, B4, 3, sport=1)
    b = segments(A4, B4, 3, sport=2)
    mixed = [a[0], b[0], a[1], b[1], a[2], b[2]]
    out = run(mixed)
    assert [resegment(o) for o in out] == [a, b]


@pytest.mark.parametrize("flags", [0x02, 0x12, 0x11, 0x04, 0x30, 0x50, 0x90])
def test_non_ack_flags_are_written_alone_and_end_the_flow(flags: int) -> None:
    a = segments(A4, B4, 2)
    odd = tcp(A4, B4, 1000 + 2 * 1368, b"z" * 10, flags=flags, options=TS)
    after = segments(A4, B4, 2, seq=1000 + 2 * 1368 + 10)
    out = run(a + [odd] + after)
    assert [resegment(o) for o in out] == [a, [odd], after]


def test_pure_ack_and_different_ack_number_do_not_merge() -> None:
    a = segments(A4, B4, 2)
    other_ack = segments(A4, B4, 1, seq=1000 + 2 * 1368, ack=99)
    pure = tcp(A4, B4, 5, b"", options=TS)
    out = run(a + other_ack + [pure])
    assert [resegment(o) for o in out] == [a, other_ack, [pure]]


def test_differing_options_ttl_or_tos_do_not_merge() -> None:
    a = segments(A4, B4, 1)[0]
    b = tcp(A4, B4, 1000 + 1368, os.urandom(1368), options=TS[:-1] + b"\x09", ident=0x101)
    c = tcp(A4, B4, 1000 + 1368, os.urandom(1368), options=TS, ttl=3, ident=0x101)
    d = tcp(A4, B4, 1000 + 1368, os.urandom(1368), options=TS, tos=4, ident=0x101)
    for second in (b, c, d):
        assert [resegment(o) for o in run([a, second])] == [[a], [second]]


def test_size_limit_of_one_super_packet() -> None:
    segs = segments(A4, B4, 60)
    out = run(segs)
    assert len(out) == 2
    assert all(len(o) - LEN <= 65535 for o in out)
    assert resegment(out[0]) + resegment(out[1]) == segs


def test_other_protocols_and_fragments_pass_through_with_a_plain_header() -> None:
    icmp = bytes.fromhex("4500001c000000004001") + bytes(10) + b"\x08\x00" + bytes(6)
    frag = bytearray(segments(A4, B4, 1)[0])
    frag[6] |= 0x20
    junk = b"\x00\x01\x02"
    u = udp(A4, B4, b"x" * 100)
    out = run([icmp, bytes(frag), junk, u, u])
    assert out == [PLAIN + icmp, PLAIN + bytes(frag), PLAIN + junk, PLAIN + u, PLAIN + u]


def test_bad_lengths_are_never_coalesced() -> None:
    s = bytearray(segments(A4, B4, 1)[0])
    s[2:4] = (len(s) + 4).to_bytes(2, "big")
    out = run([bytes(s), bytes(s)])
    assert out == [PLAIN + bytes(s), PLAIN + bytes(s)]


@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
def test_udp_datagrams_coalesce_when_the_tun_has_uso(src: str, dst: str) -> None:
    dgrams = [udp(src, dst, os.urandom(1200), ident=0x10 + i if ":" not in src else 0)
              for i in range(5)] + [udp(src, dst, os.urandom(7), ident=0x15 if ":" not in src
                                        else 0)]
    out = run(dgrams, udp_ok=True)
    assert len(out) == 1
    h = VirtioNetHdr.decode(out[0])
    assert (h.gso_type, h.gso_size, h.csum_offset) == (GSO_UDP_L4, 1200, 6)
    assert resegment(out[0]) == dgrams
    assert run(dgrams, udp_ok=False) == [PLAIN + d for d in dgrams]


def test_random_bytes_never_crash() -> None:
    c = Coalescer(udp=True)
    for _ in range(3000):
        n = int.from_bytes(os.urandom(1), "big")
        p = bytearray(os.urandom(n))
        if n and n % 3 == 0:
            p[0] = 0x45
        if n > 9 and n % 2 == 0:
            p[9] = 6
        c.add(bytes(p))
    assert len(c.flush()) >= 1


def test_tcp_and_udp_of_the_same_addresses_and_ports_stay_apart() -> None:
    t = segments(A4, B4, 2)
    u = [udp(A4, B4, os.urandom(1368), ident=0x50 + i) for i in range(2)]
    out = run([t[0], u[0], t[1], u[1]], udp_ok=True)
    assert [resegment(o) for o in out] == [t, u]


def test_window_change_ends_a_group_like_kernel_gro() -> None:
    a = segments(A4, B4, 2)
    b = tcp(A4, B4, 1000 + 2 * 1368, os.urandom(1368), options=TS, window=9999, ident=0x102)
    assert [resegment(o) for o in run(a + [b])] == [a, [b]]
