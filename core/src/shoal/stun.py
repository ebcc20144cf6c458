"""STUN messages (RFC 8489), RFC 5780 NAT behaviour discovery and the TURN (RFC 8656) methods.

The codec is aioice's ``stun`` module: maintained, table-driven (one row per
attribute: type, name, pack, unpack), and it already knows every attribute
Shoal uses -- XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, CHANGE-REQUEST,
RESPONSE-ORIGIN, OTHER-ADDRESS, ERROR-CODE, USERNAME, REALM, NONCE,
MESSAGE-INTEGRITY, FINGERPRINT, SOFTWARE and the TURN ones (LIFETIME,
REQUESTED-TRANSPORT, XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS, DATA,
CHANNEL-NUMBER). This module adds the rows it lacks (UNKNOWN-ATTRIBUTES for
420 answers, RESPONSE-PORT and PADDING of RFC 5780 so they are recognised),
and wraps parsing so that any malformed input is one exception type
(``StunError``) for the caller to drop and count.

Header (RFC 8489 §5); every STUN message on the node's UDP socket is told
apart from Shoal's own packets by the first two bits and the magic cookie::

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0 0|     STUN Message Type     |         Message Length        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                   Magic Cookie 0x2112A442                     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                Transaction ID (96 bits)                       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    then attributes: type u16 | length u16 | value, padded to 4 bytes

``is_stun`` accepts only: top two bits zero, the cookie at offset 4, and a
length field that is a multiple of 4 equal to the bytes that follow the
header. Shoal's own packets (``shoal.wire``) carry two zero bytes at offsets
2..3 and are all longer than 20 bytes, so none of them passes, and no STUN
message parses as one of Shoal's: the engine hands every datagram ``is_stun``
accepts to the handler of ``wire.TYPE_STUN`` (0), whatever its first byte.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aioice import stun as _aio

from shoal import wire

Message = _aio.Message
Method = _aio.Method
Class = _aio.Class

COOKIE = struct.pack("!I", _aio.COOKIE)
HEADER_LEN = _aio.HEADER_LENGTH
CHANGE_IP, CHANGE_PORT = 0x04, 0x02          # CHANGE-REQUEST flags (RFC 5780 §7.2)
UDP_TRANSPORT = 17 << 24                      # REQUESTED-TRANSPORT value for UDP (RFC 8656)

# Comprehension-required attribute types this module understands (RFC 8489 §14).
UNKNOWN_ATTRIBUTES = 0x000A
RESPONSE_PORT = 0x0027
PADDING = 0x0026


def _pack_types(value: list[int]) -> bytes:
    return b"".join(struct.pack("!H", t) for t in value)


def _unpack_types(data: bytes) -> list[int]:
    return [t for (t,) in struct.iter_unpack("!H", data[: len(data) // 2 * 2])]


def _pack_port(value: int) -> bytes:
    return struct.pack("!HH", value, 0)


def _unpack_port(data: bytes) -> int:
    if len(data) < 2:
        raise ValueError("RESPONSE-PORT is shorter than 2 bytes")
    return int(struct.unpack("!H", data[:2])[0])


_EXTRA: list[_aio.AttributeEntry] = [
    (UNKNOWN_ATTRIBUTES, "UNKNOWN-ATTRIBUTES", _pack_types, _unpack_types),
    (PADDING, "PADDING", _aio.pack_bytes, _aio.unpack_bytes),
    (RESPONSE_PORT, "RESPONSE-PORT", _pack_port, _unpack_port),
]
for _row in _EXTRA:  # extend the codec's table (idempotent; rows aioice has win)
    _aio.ATTRIBUTES_BY_TYPE.setdefault(_row[0], _row)
    _aio.ATTRIBUTES_BY_NAME.setdefault(_row[1], _row)
KNOWN_TYPES = frozenset(_aio.ATTRIBUTES_BY_TYPE)


class StunError(ValueError):
    """Not a well-formed STUN message; the caller drops and counts it."""


is_stun = wire.is_stun   # cheap demultiplexing test (RFC 8489 §6.3), no parsing


def decode(data: bytes) -> Message:
    """Parse one message; FINGERPRINT, when present, is verified."""
    if not is_stun(data):
        raise StunError("not a STUN message")
    try:
        return _aio.parse_message(bytes(data))
    except (ValueError, struct.error, IndexError, UnicodeDecodeError, KeyError) as e:
        raise StunError(f"malformed STUN message: {e}") from None


def attribute_types(data: bytes) -> Iterator[int]:
    """The attribute types of a message, in order (for UNKNOWN-ATTRIBUTES checks)."""
    pos = HEADER_LEN
    while pos + 4 <= len(data):
        t, length = struct.unpack_from("!HH", data, pos)
        yield t
        pos += 4 + length + (-length % 4)


def unknown_required(data: bytes) -> list[int]:
    """Comprehension-required attributes (type < 0x8000) the codec does not know."""
    return [t for t in attribute_types(data) if t < 0x8000 and t not in KNOWN_TYPES]


def encode(msg: Message, integrity_key: bytes | None = None, fingerprint: bool = True) -> bytes:
    """Serialise; MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) then FINGERPRINT last."""
    if integrity_key is not None:
        msg.add_message_integrity(integrity_key)  # also adds FINGERPRINT
        if not fingerprint:
            msg.attributes.pop("FINGERPRINT", None)
    elif fingerprint:
        msg.add_fingerprint()
    return bytes(msg)


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 §9.2.2: MD5(username ":" realm ":" password) (password already SASLprepped)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()


def check_integrity(msg: Message, key: bytes) -> bool:
    return "MESSAGE-INTEGRITY" in msg.attributes and msg.check_message_integrity(key)


def binding_request(flags: int = 0, txid: bytes | None = None) -> Message:
    """A Binding request; ``flags`` are CHANGE-REQUEST bits (0: no CHANGE-REQUEST)."""
    attrs: dict[str, Any] = {"CHANGE-REQUEST": flags} if flags else {}
    return Message(Method.BINDING, Class.REQUEST, transaction_id=txid, attributes=attrs)


def error_response(request: Message, code: int, reason: str,
                   **attributes: Any) -> Message:
    attrs: dict[str, Any] = {"ERROR-CODE": (code, reason)}
    attrs.update({k.replace("_", "-"): v for k, v in attributes.items()})
    return Message(request.message_method, Class.ERROR, request.transaction_id, attrs)


@dataclass(frozen=True)
class BindingAnswer:
    """What a Binding success response says (RFC 5780 §7)."""

    mapped: tuple[str, int]
    other: tuple[str, int] | None         # OTHER-ADDRESS: where RFC 5780 tests go next
    origin: tuple[str, int] | None        # RESPONSE-ORIGIN: where the answer came from

    @classmethod
    def from_message(cls, msg: Message) -> BindingAnswer:
        a = msg.attributes
        mapped = a.get("XOR-MAPPED-ADDRESS") or a.get("MAPPED-ADDRESS")
        if mapped is None:
            raise StunError("Binding response without a mapped address")
        return cls(mapped=mapped, other=a.get("OTHER-ADDRESS") or a.get("CHANGED-ADDRESS"),
                   origin=a.get("RESPONSE-ORIGIN") or a.get("SOURCE-ADDRESS"))


def error_of(msg: Message) -> tuple[int, str] | None:
    e = msg.attributes.get("ERROR-CODE")
    return (int(e[0]), str(e[1])) if e is not None else None

