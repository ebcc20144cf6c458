"""UDP generic segmentation (UDP_SEGMENT) and receive offload (UDP_GRO), sans I/O.

Send: a run of sealed datagrams of equal size (the last may be shorter) to one
endpoint goes out as one ``sendmsg`` whose buffers are the datagrams back to
back and whose control message ``(SOL_UDP, UDP_SEGMENT, u16 size)`` tells the
kernel where to cut (Linux 4.18, udp(7)). The datagrams on the wire are
exactly the ones ``sendto`` would have sent, one sealed packet each.

Receive: with ``UDP_GRO`` enabled the kernel may hand over several datagrams
of one sender in one read, with ``(SOL_UDP, UDP_GRO, int size)``: every
``size`` bytes is one datagram, the last may be shorter (Linux 5.0).

Limits (include/linux/udp.h, net/ipv4/udp.c): at most ``UDP_MAX_SEGMENTS``
segments and a total that fits one IP datagram.
"""

from __future__ import annotations

import sys
from typing import Any

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_SEGMENTS = 64              # UDP_MAX_SEGMENTS of older kernels (newer allow 128)
MAX_BYTES = 65507              # largest IPv4 UDP payload
_ORDER = sys.byteorder


def segment_cmsg(size: int) -> list[tuple[int, int, bytes]]:
    """The ancillary data asking the kernel to cut a send into ``size``-byte datagrams."""
    return [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, _ORDER))]


def batches(datagrams: list[bytes], max_segments: int = MAX_SEGMENTS,
            max_bytes: int = MAX_BYTES) -> list[tuple[list[bytes], int]]:
    """Group consecutive datagrams into GSO sends: ``(datagrams, segment size)``.

    Within a group every datagram but the last has the segment size and the
    last is not longer. A group of one has size 0: send it plainly.
    """
    n_all = len(datagrams)
    if n_all > 1:  # the usual case, a cut super-packet: equal sizes, the last not longer
        lens = list(map(len, datagrams))
        size = lens[0]
        if lens.count(size) == n_all - (lens[-1] < size):
            per = min(max_segments, max_bytes // size) if size else 0
            if per >= 2:
                return [(datagrams[i:i + per], size if n_all - i > 1 else 0)
                        for i in range(0, n_all, per)]
    out: list[tuple[list[bytes], int]] = []
    group: list[bytes] = []
    size = 0
    total = 0
    for d in datagrams:
        n = len(d)
        if group and n <= size and len(group) < max_segments and total + n <= max_bytes:
            group.append(d)
            total += n
            if n < size:  # a shorter datagram closes the group
                out.append((group, size))
                group, size, total = [], 0, 0
            continue
        if group:
            out.append((group, size if len(group) > 1 else 0))
        group, size, total = [d], n, n
    if group:
        out.append((group, size if len(group) > 1 else 0))
    return out


def gro_segment_size(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The segment size from ``recvmsg`` ancillary data; 0 when the read is one datagram."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:4] if len(data) >= 4 else data[:2], _ORDER)
    return 0


def split_gro(buf: Any, size: int) -> list[Any]:
    """The datagrams of one GRO read (``buf`` exactly the bytes read)."""
    n = len(buf)
    if size <= 0 or size >= n:
        return [buf]
    return [buf[i:i + size] for i in range(0, n, size)]
