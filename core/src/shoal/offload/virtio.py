"""The virtio-net header that prefixes every read and write of a TUN opened with IFF_VNET_HDR.

Layout (``struct virtio_net_hdr``, include/uapi/linux/virtio_net.h; TUN uses the
host's byte order unless TUNSETVNETLE/BE says otherwise, so native order here)::

    0        1          2          4          6             8              10
    +--------+----------+----------+----------+-------------+--------------+
    | flags  | gso_type | hdr_len  | gso_size | csum_start  | csum_offset  |
    +--------+----------+----------+----------+-------------+--------------+

* ``flags``: NEEDS_CSUM (the L4 checksum is partial: the field at
  ``csum_start + csum_offset`` holds the pseudo-header sum and the rest must
  be summed from ``csum_start``), DATA_VALID (checksum already verified).
* ``gso_type``: NONE, TCPV4, TCPV6, UDP_L4 (USO), with the ECN bit; the packet
  is then a super-packet to be cut into ``gso_size``-byte payloads.

Reads come from the local kernel, but are still parsed strictly: anything
inconsistent raises ``BadVirtioHeader`` and the caller drops and counts it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("=BBHHHH")
LEN = HEADER.size  # 10

F_NEEDS_CSUM = 1
F_DATA_VALID = 2

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3       # UFO: never enabled by Shoal, rejected
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

#: The header of a plain packet whose checksums are complete.
PLAIN = bytes(LEN)


class BadVirtioHeader(ValueError):
    """A virtio-net header or the packet behind it is inconsistent; drop it."""


@dataclass(frozen=True, slots=True)
class VirtioNetHdr:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    def encode(self) -> bytes:
        return HEADER.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size,
                           self.csum_start, self.csum_offset)

    @property
    def gso(self) -> int:
        """The GSO kind without the ECN bit."""
        return self.gso_type & ~GSO_ECN

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview) -> VirtioNetHdr:
        """Parse the header at the start of ``buf`` (a whole read from the TUN)."""
        if len(buf) < LEN:
            raise BadVirtioHeader(f"read of {len(buf)} bytes is shorter than the virtio header")
        h = cls(*HEADER.unpack_from(buf))
        if h.gso not in (GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4):
            raise BadVirtioHeader(f"unsupported gso_type {h.gso_type:#x}")
        if h.gso != GSO_NONE and h.gso_size == 0:
            raise BadVirtioHeader("GSO packet with gso_size 0")
        if h.flags & F_NEEDS_CSUM and \
                h.csum_start + h.csum_offset + 2 > len(buf) - LEN:
            raise BadVirtioHeader("checksum position beyond the packet")
        return h


def encode(flags: int = 0, gso_type: int = GSO_NONE, hdr_len: int = 0, gso_size: int = 0,
           csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return HEADER.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
