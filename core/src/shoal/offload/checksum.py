"""The Internet checksum (RFC 1071) for IPv4 headers and TCP/UDP segments.

Sums are kept as plain Python integers that are congruent, modulo 0xFFFF, to
the one's-complement sum of the big-endian 16-bit words (RFC 1071 §2: 2^16 is
1 modulo 0xFFFF, so a whole buffer read as one big integer has the same
residue as the sum of its words). That lets a buffer be summed with one
``int.from_bytes`` and one ``%`` in C instead of a Python loop over words,
and partial sums (pseudo-header, header, payload) simply add.

Segmenting a 64 KB super-packet needs the payload sum of every segment;
``segment_sums`` computes them all in one vectorised numpy call (about 0.3 µs
per 1400-byte segment against 2.5 µs for the scalar path), and falls back to
the scalar path when numpy is missing or the segments have odd length. numpy
is imported on first use (or by ``warm_up`` once the node is running), so it
costs nothing at start-up.
"""

from __future__ import annotations

from typing import Any

_np: Any = None
_np_tried = False


def warm_up() -> bool:
    """Import numpy now (it takes a few hundred ms); True when it is available."""
    global _np, _np_tried
    if not _np_tried:
        _np_tried = True
        try:  # numpy is a dependency; the fallback keeps the data path alive without it
            import numpy
            _np = numpy
        except ImportError:  # pragma: no cover - only where numpy cannot install
            _np = None
    return _np is not None

MOD = 0xFFFF
PROTO_TCP = 6
PROTO_UDP = 17


def sum16(data: Any) -> int:
    """One's-complement sum (unfolded residue) of ``data`` as big-endian words.

    An odd trailing byte counts as the high byte of a last word (RFC 1071 §4.1).
    """
    if len(data) & 1:
        return (int.from_bytes(data, "big") << 8) % MOD
    return int.from_bytes(data, "big") % MOD


def fold(total: int) -> int:
    """The 16-bit one's-complement sum for a residue; never +0 for non-zero data."""
    r = total % MOD
    return r if r else (MOD if total else 0)


def finish(total: int) -> int:
    """The checksum field value for a sum that covers everything (complemented)."""
    return MOD - fold(total)


def finish_udp(total: int) -> int:
    """As ``finish``; UDP transmits a computed 0 as 0xFFFF (0 means "no checksum")."""
    return (MOD - fold(total)) or MOD


def pseudo_sum(src: bytes, dst: bytes, proto: int) -> int:
    """Pseudo-header sum without the length (RFC 793 §3.1, RFC 8200 §8.1)."""
    return int.from_bytes(src, "big") % MOD + int.from_bytes(dst, "big") % MOD + proto


def segment_sums(buf: Any, start: int, seg_len: int, count: int) -> list[int]:
    """Sums of ``count`` consecutive ``seg_len``-byte slices of ``buf`` from ``start``."""
    if count <= 0:
        return []
    if not _np_tried:
        warm_up()
    if _np is not None and not seg_len & 1 and count > 2:
        words = _np.frombuffer(buf, ">u2", count=(seg_len >> 1) * count, offset=start)
        return words.reshape(count, seg_len >> 1).sum(axis=1, dtype=_np.uint64).tolist()
    mv = memoryview(buf)
    return [sum16(mv[start + i * seg_len:start + (i + 1) * seg_len]) for i in range(count)]


def ipv4_header_checksum(header: bytes | bytearray) -> int:
    """Checksum of an IPv4 header whose checksum field (bytes 10-11) is zero."""
    return finish(int.from_bytes(header, "big"))


def verify(total: int) -> bool:
    """True when a sum that includes the transmitted checksum field checks out."""
    return fold(total) == MOD
