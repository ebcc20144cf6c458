"""Authenticated connectivity-check probes (ping/pong), sans-IO.

Probes travel on the node's UDP socket (and on extra sockets opened for
birthday punching) beside handshakes and data, told apart by the type byte::

    0      1      2      4                        36            48
    | 0x05 | 0x01 | 0000 | sender public key (32)  | nonce (12)  | AEAD(body) |
    body: kind u8 (1 ping, 2 pong) | txid (12) | flags u8 | port u16 | IPv4 (4)

The AEAD (ChaCha20-Poly1305) key is derived from the static-static X25519
secret of the two nodes, so only the claimed sender can make a probe that
verifies; the 36-byte header is associated data. A pong echoes the ping's
txid and carries the source address the ping came from (what the sender's NAT
mapped it to). Pongs are accepted only for txids we sent; a replayed ping
only earns its sender another pong.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

TYPE_PROBE = 5
VERSION = 1
PREFIX = bytes((TYPE_PROBE, VERSION, 0, 0))
HEADER_LEN = 4 + 32 + 12
BODY = struct.Struct(">B12sBH4s")
PING, PONG = 1, 2
FLAG_NOMINATE = 1


class BadProbe(ValueError):
    pass


@dataclass(frozen=True)
class Probe:
    kind: int
    txid: bytes
    flags: int
    observed: tuple[str, int]


def pair_key(local_private: bytes, remote_public: bytes, local_public: bytes) -> ChaCha20Poly1305:
    shared = X25519PrivateKey.from_private_bytes(local_private).exchange(
        X25519PublicKey.from_public_bytes(remote_public))
    a, b = sorted((local_public, remote_public))
    return ChaCha20Poly1305(hashlib.blake2s(b"shoal probe v1" + a + b, key=shared).digest())


def sender_of(packet: bytes) -> bytes:
    if len(packet) < HEADER_LEN + BODY.size + 16 or packet[:4] != PREFIX:
        raise BadProbe("not a probe")
    return packet[4:36]


def seal(aead: ChaCha20Poly1305, sender: bytes, probe: Probe) -> bytes:
    header = PREFIX + sender + os.urandom(12)
    body = BODY.pack(probe.kind, probe.txid, probe.flags, probe.observed[1],
                     ipaddress.IPv4Address(probe.observed[0]).packed)
    return header + aead.encrypt(header[36:48], body, header)


def open_(aead: ChaCha20Poly1305, packet: bytes) -> Probe:
    header = packet[:HEADER_LEN]
    try:
        body = aead.decrypt(header[36:48], packet[HEADER_LEN:], header)
    except InvalidTag:
        raise BadProbe("probe does not authenticate") from None
    kind, txid, flags, port, ip = BODY.unpack_from(body)
    if kind not in (PING, PONG):
        raise BadProbe("unknown probe kind")
    return Probe(kind, txid, flags, (str(ipaddress.IPv4Address(ip)), port))


def new_txid() -> bytes:
    return os.urandom(12)
