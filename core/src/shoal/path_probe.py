"""Path probes: authenticated ping/pong the core sends on every path it measures (sans-IO).

Any transport carries them, beside handshakes and data, told apart by the type
byte (``TYPE_PATH_PROBE``, reserved for the core)::

    0      1      2      4                        36           48
    | 0x06 | 0x01 | 0000 | sender public key (32)  | nonce (12) | AEAD(body) (+16) |
    body: kind u8 (1 ping, 2 pong) | txid (8)

The ChaCha20-Poly1305 key is derived from the static-static X25519 secret of
the two nodes (BLAKE2s keyed with it, over both public keys in sorted order),
so only the claimed sender can make a probe that verifies; the 48-byte header
is associated data. A pong echoes the ping's txid. Pongs count only for txids
this node sent and has not seen answered; a replayed ping earns its sender one
pong of the same size (no amplification). Trailing bytes after the body are
ignored (later versions may add fields).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

TYPE_PATH_PROBE = 6
VERSION = 1
PREFIX = bytes((TYPE_PATH_PROBE, VERSION, 0, 0))
HEADER_LEN = 4 + 32 + 12
BODY = struct.Struct(">B8s")
PING, PONG = 1, 2
MIN_LEN = HEADER_LEN + BODY.size + 16


class BadProbe(ValueError):
    """Not a probe, or one that does not authenticate: dropped and counted."""


@dataclass(frozen=True)
class PathProbe:
    kind: int
    txid: bytes


def pair_key(local_private: bytes, local_public: bytes, remote_public: bytes
             ) -> ChaCha20Poly1305:
    shared = X25519PrivateKey.from_private_bytes(local_private).exchange(
        X25519PublicKey.from_public_bytes(remote_public))
    a, b = sorted((local_public, remote_public))
    return ChaCha20Poly1305(hashlib.blake2s(b"shoal path probe v1" + a + b, key=shared).digest())


def new_txid() -> bytes:
    return os.urandom(8)


def seal(aead: ChaCha20Poly1305, sender: bytes, probe: PathProbe) -> bytes:
    header = PREFIX + sender + os.urandom(12)
    return header + aead.encrypt(header[36:48], BODY.pack(probe.kind, probe.txid), header)


def sender_of(packet: bytes) -> bytes:
    """The claimed sender key (not yet authenticated: look up its pair key, then ``open_``)."""
    if len(packet) < MIN_LEN or packet[:4] != PREFIX:
        raise BadProbe("not a path probe")
    return packet[4:36]


def open_(aead: ChaCha20Poly1305, packet: bytes) -> PathProbe:
    if len(packet) < MIN_LEN or packet[:4] != PREFIX:
        raise BadProbe("not a path probe")
    header = packet[:HEADER_LEN]
    try:
        body = aead.decrypt(header[36:48], packet[HEADER_LEN:], header)
    except InvalidTag:
        raise BadProbe("path probe does not authenticate") from None
    if len(body) < BODY.size:
        raise BadProbe("path probe body too short")
    kind, txid = BODY.unpack_from(body)
    if kind not in (PING, PONG):
        raise BadProbe(f"unknown path probe kind {kind}")
    return PathProbe(kind, txid)
