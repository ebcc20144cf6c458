"""UDP GSO batch building and GRO splitting (sans I/O), and one real loopback round trip."""

from __future__ import annotations

import socket

import pytest
from shoal.offload import udp_gso
from shoal.offload.udp_gso import batches, gro_segment_size, segment_cmsg, split_gro


def d(n: int, fill: int = 1) -> bytes:
    return bytes([fill]) * n


def test_equal_datagrams_with_a_shorter_last_make_one_batch() -> None:
    dg = [d(1452)] * 10 + [d(300)]
    assert batches(dg) == [(dg, 1452)]


def test_a_shorter_datagram_closes_the_batch_and_a_longer_one_starts_a_new() -> None:
    a, b, c = d(1000), d(500), d(1200)
    assert batches([a, a, b, a, c, c]) == [([a, a, b], 1000), ([a], 0), ([c, c], 1200)]


def test_a_shorter_datagram_in_the_middle_is_never_inside_a_batch() -> None:
    a, b = d(1000), d(500)
    assert batches([a, b, a]) == [([a, b], 1000), ([a], 0)]
    assert batches([a, a, d(1200)]) == [([a, a], 1000), ([d(1200)], 0)]


def test_single_datagrams_go_plain() -> None:
    assert batches([d(80)]) == [([d(80)], 0)]
    assert batches([]) == []


def test_limits_on_segments_and_bytes() -> None:
    dg = [d(1452)] * 100
    out = batches(dg)
    assert [len(g) for g, _ in out] == [45, 45, 10]        # 45 * 1452 <= 65507 < 46 * 1452
    assert all(sum(map(len, g)) <= udp_gso.MAX_BYTES for g, _ in out)
    small = [d(100)] * 200
    assert [len(g) for g, _ in batches(small)] == [64, 64, 64, 8]


def test_gro_split_and_cmsg_parsing() -> None:
    buf = d(1452) * 3 + d(10, 2)
    parts = split_gro(buf, 1452)
    assert [len(p) for p in parts] == [1452, 1452, 1452, 10]
    assert split_gro(buf, 0) == [buf]
    assert split_gro(d(5), 1452) == [d(5)]
    size = (1452).to_bytes(4, "little")
    assert gro_segment_size([(udp_gso.SOL_UDP, udp_gso.UDP_GRO, size)]) == 1452
    assert gro_segment_size([(1, 2, b"xx")]) == 0
    assert gro_segment_size([]) == 0


def test_gso_send_and_gro_receive_over_loopback() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        try:
            rx.setsockopt(udp_gso.SOL_UDP, udp_gso.UDP_GRO, 1)
        except OSError:
            pytest.skip("kernel without UDP_GRO")
        dg = [bytes([i]) * 1000 for i in range(5)] + [b"\xee" * 99]
        for group, size in batches(dg):
            try:
                tx.sendmsg(group, segment_cmsg(size) if size else [], 0, rx.getsockname())
            except OSError:
                pytest.skip("kernel without UDP_SEGMENT")
        rx.settimeout(2)
        got: list[bytes] = []
        while len(got) < len(dg):
            data, anc, _, _ = rx.recvmsg(65535, socket.CMSG_SPACE(4))
            got += [bytes(p) for p in split_gro(data, gro_segment_size(anc))]
        assert got == dg
    finally:
        rx.close()
        tx.close()
