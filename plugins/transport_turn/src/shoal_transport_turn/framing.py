"""TURN framing: ChannelData messages and the stream deframer for TURN over TCP/TLS.

ChannelData (RFC 8656 §12.4), the compact way to carry one datagram to or
from a peer once a channel is bound::

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Channel Number        |            Length             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                      Application Data (Length bytes)          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    channel numbers 0x4000..0x4FFF (first two bits 01: never a STUN message)

Over UDP a datagram is either one STUN message or one ChannelData message;
trailing padding is allowed. Over TCP/TLS both kinds follow each other on the
stream; ChannelData is padded to a multiple of 4 bytes there (§12.5), and a
STUN message's length is in its header. ``StreamDeframer`` cuts the stream
into messages; it is bounded (one message is at most 20 + 65535 bytes) and
resynchronisation is impossible on a stream, so garbage ends the connection.
"""

from __future__ import annotations

import struct

CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x4FFF
HEADER = struct.Struct("!HH")


class FramingError(ValueError):
    """Not ChannelData / not a TURN stream: drop (UDP) or close the connection (TCP)."""


def is_channel_data(data: bytes) -> bool:
    return len(data) >= 4 and 0x40 <= data[0] <= 0x4F


def encode_channel_data(channel: int, payload: bytes, stream: bool = False) -> bytes:
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"channel {channel:#x} outside 0x4000..0x4FFF")
    if len(payload) > 0xFFFF:
        raise ValueError("payload longer than 65535 bytes")
    out = HEADER.pack(channel, len(payload)) + payload
    if stream and len(payload) % 4:
        out += bytes(-len(payload) % 4)
    return out


def decode_channel_data(data: bytes) -> tuple[int, bytes]:
    if len(data) < 4:
        raise FramingError("ChannelData shorter than 4 bytes")
    channel, length = HEADER.unpack_from(data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise FramingError(f"channel {channel:#x} outside 0x4000..0x4FFF")
    if len(data) < 4 + length:
        raise FramingError("ChannelData shorter than its length field")
    return channel, data[4:4 + length]


class StreamDeframer:
    """Bytes from a TCP/TLS connection to a TURN server -> whole messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 4:
            first = self._buf[0]
            length = int.from_bytes(self._buf[2:4], "big")
            if first < 0x40:
                size = 20 + length
                take = size
            elif first <= 0x4F:
                size = 4 + length
                take = size + (-length % 4)
            else:
                raise FramingError("neither STUN nor ChannelData on the TURN stream")
            if len(self._buf) < max(take, 20 if first < 0x40 else 4):
                break
            out.append(bytes(self._buf[:size]))
            del self._buf[:take]
        return out
