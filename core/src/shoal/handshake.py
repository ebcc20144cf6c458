"""Noise IK handshake between two peers, as a sans-IO machine.

``Noise_IK_25519_ChaChaPoly_BLAKE2s`` (Noise spec §7.5): the initiator knows the
responder's static key in advance (from config or as vouched for by the
coordination server) and proves its own in message 1; the responder proves its
key in message 2. The prologue binds the protocol name and version.

Error contract (nebula's habit): every failure raises ``HandshakeError``; the
caller drops the packet, counts it and keeps its existing sessions. A
responder never changes state for a message it could not authenticate, and
rejects an initiation whose timestamp is not newer than the last one accepted
from that key (replayed initiations).

Transport keys come out of Noise's ``Split()``; the data path uses them with an
explicit 64-bit counter nonce instead of Noise's implicit one (see wire.py).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from noise.backends.default.keypairs import KeyPair25519
from noise.connection import Keypair as NoiseKeypair
from noise.connection import NoiseConnection

from shoal import wire
from shoal.cookie import MacSealer
from shoal.identity import StaticKeypair

log = logging.getLogger(__name__)

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"shoal peer v1"


class HandshakeError(Exception):
    """The handshake message was rejected; drop it, keep existing state."""


class InitiatorState(Enum):
    SENT = "sent"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class SessionKeys:
    """Result of a completed handshake: everything a ``Session`` needs."""

    send_key: bytes
    recv_key: bytes
    cipher: int
    local_index: int
    remote_index: int
    is_initiator: bool
    remote_static: bytes


def new_index(taken: Callable[[int], bool] = lambda i: False) -> int:
    while True:
        i = secrets.randbits(32)
        if i and not taken(i):
            return i


@lru_cache(maxsize=8)
def _static_keypair(private: bytes) -> KeyPair25519:
    """The node's own key pair in noiseprotocol's form, derived once (deriving the public
    key is a scalar multiplication: not something to repeat for every initiation)."""
    return KeyPair25519.from_private_bytes(private)


def _noise(local: StaticKeypair) -> NoiseConnection:
    n = NoiseConnection.from_name(PROTOCOL_NAME)
    n.set_prologue(PROLOGUE)
    n.noise_protocol.keypairs["s"] = _static_keypair(local.private)
    return n


def _split(n: NoiseConnection) -> tuple[bytes, bytes]:
    proto = n.noise_protocol
    return (bytes(proto.cipher_state_encrypt.k), bytes(proto.cipher_state_decrypt.k))


def cipher_mask(ciphers: tuple[int, ...]) -> int:
    m = 0
    for c in ciphers:
        m |= 1 << c
    return m


class Initiator:
    """One handshake attempt from this side: ``packet`` to send, ``process_response`` back."""

    def __init__(self, local: StaticKeypair, remote_static: bytes, local_index: int,
                 timestamp_ns: int, ciphers: tuple[int, ...], sealer: MacSealer | None = None,
                 now: float = 0.0) -> None:
        self.remote_static = remote_static
        self.local_index = local_index
        self.ciphers = ciphers
        self.state = InitiatorState.SENT
        n = _noise(local)
        n.set_as_initiator()
        n.set_keypair_from_public_bytes(NoiseKeypair.REMOTE_STATIC, remote_static)
        n.start_handshake()
        payload = wire.INIT_PAYLOAD.pack(wire.VERSION, timestamp_ns, cipher_mask(ciphers))
        self._noise = n
        body = wire.encode_init(local_index, bytes(n.write_message(payload)))
        self.packet = (sealer or MacSealer(remote_static)).seal(body, now)

    def process_response(self, msg: wire.HandshakeResp) -> SessionKeys:
        if self.state is not InitiatorState.SENT:
            raise HandshakeError("no handshake in progress")
        if msg.receiver != self.local_index:
            raise HandshakeError("response for another handshake")
        try:
            payload = bytes(self._noise.read_message(msg.noise))
        except Exception as e:  # noqa: BLE001 - noiseprotocol raises assorted types
            # The Noise state has absorbed the bad message, so this attempt is
            # over; the peer's retry timer starts a fresh one.
            self.state = InitiatorState.FAILED
            raise HandshakeError(f"response does not authenticate: {type(e).__name__}") from None
        if len(payload) < wire.RESP_PAYLOAD.size:
            raise HandshakeError("response payload too short")
        version, cipher = wire.RESP_PAYLOAD.unpack_from(payload)
        if version != wire.VERSION or cipher not in self.ciphers:
            self.state = InitiatorState.FAILED
            raise HandshakeError(f"responder chose version {version} cipher {cipher}")
        send, recv = _split(self._noise)
        self.state = InitiatorState.DONE
        log.debug("handshake %08x done as initiator", self.local_index)
        return SessionKeys(send, recv, cipher, self.local_index, msg.sender, True, self.remote_static)


@dataclass(frozen=True)
class Response:
    packet: bytes
    keys: SessionKeys
    timestamp_ns: int


def respond(local: StaticKeypair, msg: wire.HandshakeInit, local_index: int,
            accept: Callable[[bytes, int], bool], ciphers: tuple[int, ...],
            seal: Callable[[bytes, bytes], bytes] | None = None) -> Response:
    """Answer an initiation.

    ``accept(remote_static, timestamp_ns)`` decides whether that key may connect
    and whether the timestamp is new enough (replay protection); it is called
    only after message 1 authenticated. ``seal(remote_static, body)`` appends
    the MACs for the initiator (default: a fresh ``MacSealer``). The caller has
    checked the initiation's mac1 (cookie.CookieChecker) before calling this.
    """
    n = _noise(local)
    n.set_as_responder()
    n.start_handshake()
    try:
        payload = bytes(n.read_message(msg.noise))
    except Exception as e:  # noqa: BLE001 - noiseprotocol raises assorted types
        raise HandshakeError(f"initiation does not authenticate: {type(e).__name__}") from None
    remote_static = bytes(n.noise_protocol.handshake_state.rs.public_bytes)
    if len(payload) < wire.INIT_PAYLOAD.size:
        raise HandshakeError("initiation payload too short")
    version, ts, mask = wire.INIT_PAYLOAD.unpack_from(payload)
    if version != wire.VERSION:
        raise HandshakeError(f"initiation has protocol version {version}")
    if not accept(remote_static, ts):
        raise HandshakeError("initiator not allowed or initiation replayed")
    chosen = next((c for c in ciphers if mask & (1 << c)), None)
    if chosen is None:
        raise HandshakeError("no cipher in common")
    out = bytes(n.write_message(wire.RESP_PAYLOAD.pack(wire.VERSION, chosen)))
    send, recv = _split(n)
    keys = SessionKeys(send, recv, chosen, local_index, msg.sender, False, remote_static)
    body = wire.encode_resp(local_index, msg.sender, out)
    packet = seal(remote_static, body) if seal else MacSealer(remote_static).seal(body, 0.0)
    return Response(packet, keys, ts)
