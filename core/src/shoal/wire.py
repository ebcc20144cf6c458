"""Peer-to-peer packet formats on the node's UDP socket (ARCHITECTURE §4).

Every packet starts with a 4-byte header: type, protocol version, two zero
bytes. Parsers are strict about the fixed fields and the minimum length; a
packet that fails any check is dropped and counted by the caller.

Version history: 1 — the first format; 2 — handshake messages end in
``mac1 || mac2`` and the cookie reply (type 3) exists (see cookie.py). A
packet of another version is dropped and counted as malformed.

Handshake initiation (type 1), Noise IK message 1::

    0      1      2      4          8                                   -32    -16
    +------+------+------+----------+-----------------------------------+------+------+
    | 0x01 | 0x02 | 0000 | sender   | noise msg1 (e, s, payload) 96+ B  | mac1 | mac2 |
    +------+------+------+----------+-----------------------------------+------+------+
    payload (encrypted): version u8 | timestamp_ns u64 BE | ciphers u8 bitmask

Handshake response (type 2), Noise IK message 2::

    0      1      2      4          8          12                       -32    -16
    +------+------+------+----------+----------+------------------------+------+------+
    | 0x02 | 0x02 | 0000 | sender   | receiver | noise msg2 (e, payload)| mac1 | mac2 |
    +------+------+------+----------+----------+------------------------+------+------+
    payload (encrypted): version u8 | chosen cipher u8

Cookie reply (type 3): see cookie.py; 52 bytes.

Transport data (type 4)::

    0      1      2      4          8                    16
    +------+------+------+----------+--------------------+----------------+
    | 0x04 | 0x02 | 0000 | receiver | counter u64 LE     | AEAD(packet)   |
    +------+------+------+----------+--------------------+----------------+

The 16-byte header is the AEAD's associated data; the nonce is four zero bytes
followed by the counter (explicit, because UDP loses and reorders). An empty
plaintext is a keepalive. Indices are little-endian u32 chosen at random by
the side that receives on them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 2

TYPE_HANDSHAKE_INIT = 1
TYPE_HANDSHAKE_RESP = 2
TYPE_COOKIE_REPLY = 3
TYPE_DATA = 4
# STUN messages (RFC 8489) share the socket: whatever their first byte (0x00 or 0x01, which
# overlaps type 1), a datagram ``is_stun`` accepts is dispatched to the handler of type 0.
TYPE_STUN = 0
STUN_COOKIE = b"\x21\x12\xa4\x42"

HEADER = struct.Struct("<BBHI")          # type, version, zero, index
DATA_HEADER = struct.Struct("<BBHIQ")    # type, version, zero, receiver, counter
DATA_HEADER_LEN = DATA_HEADER.size       # 16
TAG_LEN = 16
DATA_PREFIX = bytes((TYPE_DATA, VERSION, 0, 0))
INIT_PREFIX = bytes((TYPE_HANDSHAKE_INIT, VERSION, 0, 0))
RESP_PREFIX = bytes((TYPE_HANDSHAKE_RESP, VERSION, 0, 0))
COOKIE_PREFIX = bytes((TYPE_COOKIE_REPLY, VERSION, 0, 0))
MACS_LEN = 32                     # mac1 || mac2 at the end of handshake messages
COOKIE_REPLY_LEN = 8 + 12 + 16 + 16  # header, nonce, sealed cookie

NOISE_MSG1_MIN = 32 + 48 + 16  # e, encrypted s, payload tag
NOISE_MSG2_MIN = 32 + 16       # e, payload tag

INIT_PAYLOAD = struct.Struct(">BQB")   # version, timestamp_ns, ciphers bitmask
RESP_PAYLOAD = struct.Struct(">BB")    # version, chosen cipher

# Cipher identifiers (bit positions in the initiation's bitmask).
CIPHER_CHACHA20_POLY1305 = 1
CIPHER_AES_256_GCM = 2
CIPHER_NAMES = {CIPHER_CHACHA20_POLY1305: "chacha20-poly1305", CIPHER_AES_256_GCM: "aes-256-gcm"}
CIPHER_IDS = {v: k for k, v in CIPHER_NAMES.items()}


def is_stun(data: bytes) -> bool:
    """A STUN message: top two bits zero, magic cookie at offset 4, length field that
    matches (a multiple of 4). Shoal packets carry zero bytes at offsets 2..3 and are
    longer than 20 bytes, so none of them passes (see shoal.stun)."""
    n = len(data)
    return (n >= 20 and data[4:8] == STUN_COOKIE and data[0] < 0x40 and n % 4 == 0
            and int.from_bytes(data[2:4], "big") == n - 20)


class MalformedPacket(ValueError):
    """The packet does not parse; the caller drops and counts it."""


@dataclass(frozen=True, slots=True)
class HandshakeInit:
    sender: int
    noise: bytes
    packet: bytes = b""   # the whole message, MACs included (the cookie checks need it)


@dataclass(frozen=True, slots=True)
class HandshakeResp:
    sender: int
    receiver: int
    noise: bytes
    packet: bytes = b""


def encode_init(sender: int, noise: bytes) -> bytes:
    """The initiation's body; the caller appends mac1 || mac2 (cookie.MacSealer)."""
    return HEADER.pack(TYPE_HANDSHAKE_INIT, VERSION, 0, sender) + noise


INIT_MIN = HEADER.size + NOISE_MSG1_MIN + MACS_LEN


def decode_init(packet: bytes) -> HandshakeInit:
    if len(packet) < INIT_MIN or packet[:4] != INIT_PREFIX:
        raise MalformedPacket("bad handshake initiation")
    _, _, _, sender = HEADER.unpack_from(packet)
    return HandshakeInit(sender, bytes(packet[HEADER.size:-MACS_LEN]), bytes(packet))


def encode_resp(sender: int, receiver: int, noise: bytes) -> bytes:
    """The response's body; the caller appends mac1 || mac2."""
    return HEADER.pack(TYPE_HANDSHAKE_RESP, VERSION, 0, sender) + receiver.to_bytes(4, "little") + noise


def decode_resp(packet: bytes) -> HandshakeResp:
    if len(packet) < 12 + NOISE_MSG2_MIN + MACS_LEN or packet[:4] != RESP_PREFIX:
        raise MalformedPacket("bad handshake response")
    _, _, _, sender = HEADER.unpack_from(packet)
    receiver = int.from_bytes(packet[8:12], "little")
    return HandshakeResp(sender, receiver, bytes(packet[12:-MACS_LEN]), bytes(packet))


def encode_cookie_reply(receiver: int, nonce_and_sealed: bytes) -> bytes:
    return HEADER.pack(TYPE_COOKIE_REPLY, VERSION, 0, receiver) + nonce_and_sealed


def decode_cookie_receiver(packet: bytes) -> int:
    """The receiver index of a cookie reply (the rest is opened by cookie.MacSealer)."""
    if len(packet) < COOKIE_REPLY_LEN or packet[:4] != COOKIE_PREFIX:
        raise MalformedPacket("bad cookie reply")
    return int.from_bytes(packet[4:8], "little")

