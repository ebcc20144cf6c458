"""Which of the four Ethernet framings an IPX frame uses (TAP mode), pure.

::

    Ethernet II     dst(6) src(6) 0x8137            IPX header ...
    802.3 "raw"     dst(6) src(6) length(<=1500)    ff ff (IPX checksum) ...   (Novell raw)
    802.2 LLC       dst(6) src(6) length(<=1500)    e0 e0 03                   IPX header ...
    SNAP            dst(6) src(6) length(<=1500)    aa aa 03 00 00 00 81 37    IPX header ...

A value above 1500 in bytes 12..14 is an EtherType, at most 1500 a length
(IEEE 802.3); 802.3 raw is told apart from LLC by the IPX checksum 0xFFFF
sitting where the LLC header would be (no LLC SAP is 0xFF).
"""

from __future__ import annotations

from enum import Enum

ETHERTYPE_IPX = 0x8137
MAX_8023_LENGTH = 1500
LLC_IPX = b"\xe0\xe0\x03"
SNAP_IPX = b"\xaa\xaa\x03\x00\x00\x00\x81\x37"


class IpxFraming(Enum):
    ETHERNET_II = "ethernet_ii"
    RAW_802_3 = "raw_802_3"
    LLC_802_2 = "llc_802_2"
    SNAP = "snap"


#: where the IPX header starts, per framing
IPX_OFFSET = {IpxFraming.ETHERNET_II: 14, IpxFraming.RAW_802_3: 14, IpxFraming.LLC_802_2: 17,
              IpxFraming.SNAP: 22}


def classify(frame: bytes) -> IpxFraming | None:
    """The IPX framing of an Ethernet frame, or None if it carries no IPX."""
    if len(frame) < 16:
        return None
    tl = (frame[12] << 8) | frame[13]
    if tl == ETHERTYPE_IPX:
        return IpxFraming.ETHERNET_II
    if tl > MAX_8023_LENGTH:
        return None
    if frame[14:16] == b"\xff\xff":
        return IpxFraming.RAW_802_3
    if frame[14:17] == LLC_IPX:
        return IpxFraming.LLC_802_2
    if frame[14:22] == SNAP_IPX:
        return IpxFraming.SNAP
    return None


def ipx_payload(frame: bytes) -> bytes | None:
    """The IPX datagram inside ``frame`` (header first), or None."""
    f = classify(frame)
    return None if f is None else frame[IPX_OFFSET[f]:]


def frame_ipx(framing: IpxFraming, dst: bytes, src: bytes, ipx: bytes) -> bytes:
    """Wrap an IPX datagram in ``framing`` (for tests and tools)."""
    if framing is IpxFraming.ETHERNET_II:
        return dst + src + ETHERTYPE_IPX.to_bytes(2, "big") + ipx
    body = {IpxFraming.RAW_802_3: b"", IpxFraming.LLC_802_2: LLC_IPX,
            IpxFraming.SNAP: SNAP_IPX}[framing] + ipx
    return dst + src + len(body).to_bytes(2, "big") + body
