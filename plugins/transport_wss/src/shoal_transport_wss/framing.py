"""How relay messages ride on WebSocket, and what happens to bad frames (sans-IO).

Each WebSocket *binary* message (RFC 6455 §5.6, opcode 0x2) carries exactly one
relay message of ``shoal_transport_relay.protocol``, unchanged. WebSocket's own
framing delimits it, so unlike relay-over-TCP there is no length prefix::

    one WebSocket binary message
    +------+------+------------------------------------------------+
    | "SR" | kind | body                                           |
    +------+------+------------------------------------------------+
      2 B    1 B    kind 1 ALLOC | 2 ALLOCED | 3 SEND | 4 DATA | 5 REFUSED
                    (layouts in shoal_transport_relay.protocol)

    e.g. DATA:  "SR" 0x04 | source id (8) | sealed Shoal packet

Rules:

* Text messages, messages shorter than 3 bytes, without the "SR" magic, of an
  unknown kind or truncated are dropped and counted; the connection stays up.
* Messages longer than ``MAX_MESSAGE`` never reach this code: the WebSocket
  library refuses them (close code 1009, RFC 6455 §7.4.1) and the client
  reconnects. A relayed packet of a 1420-byte interface is far below it.
* No extensions: permessage-deflate is off, sealed packets do not compress.
* Trailing bytes after a fixed-size message (ALLOCED, REFUSED) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal_transport_relay import protocol as p

#: Largest WebSocket message either side accepts (a relay header + a 64 KiB datagram).
MAX_MESSAGE = p.HEADER_LEN + 65536


@dataclass
class FrameCounters:
    """Messages dropped by reason, shown in ``status --json`` under ``wss.dropped``."""

    text: int = 0         # a text frame (Shoal only sends binary)
    malformed: int = 0    # too short, no magic, truncated
    unknown: int = 0      # a relay message kind this side never receives


@dataclass(frozen=True)
class Data:
    """A packet relayed from the node with id ``source`` (hex)."""

    source: str
    payload: bytes


@dataclass(frozen=True)
class Alloced:
    timestamp_ms: int


@dataclass(frozen=True)
class Refused:
    reason: int


FromRelay = Data | Alloced | Refused


def decode_from_relay(message: bytes | str, counters: FrameCounters) -> FromRelay | None:
    """One WebSocket message from the relay, as the node sees it; None when dropped."""
    if isinstance(message, str):
        counters.text += 1
        return None
    if len(message) < 3 or message[:2] != p.MAGIC:
        counters.malformed += 1
        return None
    kind = message[2]
    if kind == p.DATA:
        if len(message) <= p.HEADER_LEN:
            counters.malformed += 1
            return None
        return Data(message[3:p.HEADER_LEN].hex(), message[p.HEADER_LEN:])
    if kind == p.ALLOCED:
        if len(message) < p.ALLOCED_MSG.size:
            counters.malformed += 1
            return None
        return Alloced(p.ALLOCED_MSG.unpack_from(message)[2])
    if kind == p.REFUSED:
        if len(message) < 4:
            counters.malformed += 1
            return None
        return Refused(message[3])
    counters.unknown += 1
    return None


def to_relay(message: bytes | str, counters: FrameCounters) -> bytes | None:
    """One WebSocket message from a node, as the relay sees it; None when dropped.

    Only the frame type is checked here: the relay core validates (and counts)
    the relay message itself, as it does for UDP and TCP.
    """
    if isinstance(message, str):
        counters.text += 1
        return None
    return message
