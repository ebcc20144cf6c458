"""One set of transport keys between two peers (WireGuard calls it a keypair).

A session encrypts with an explicit counter and decrypts with a replay
window. Which session a peer sends on, and when a new one is needed, is the
peer's business (``peer.py``); this module only knows keys and counters.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from shoal import wire
from shoal.handshake import SessionKeys
from shoal.replay_window import ReplayWindow

# Timers and limits, as in WireGuard (whitepaper §6.1), in seconds / messages.
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_AFTER_MESSAGES = 1 << 60
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1

_AEADS = {wire.CIPHER_CHACHA20_POLY1305: ChaCha20Poly1305, wire.CIPHER_AES_256_GCM: AESGCM}

__all__ = ["Session", "InvalidTag"]


class Session:
    """Keys, counters and replay state of one handshake's outcome."""

    __slots__ = ("local_index", "remote_index", "is_initiator", "cipher", "created",
                 "send_counter", "replay", "encrypt", "decrypt", "peer", "confirmed", "rekey_at",
                 "_header_prefix")

    def __init__(self, keys: SessionKeys, now: float, peer: object = None) -> None:
        self.local_index = keys.local_index
        self.remote_index = keys.remote_index
        self.is_initiator = keys.is_initiator
        self.cipher = keys.cipher
        self.created = now
        self.send_counter = 0
        self.replay = ReplayWindow()
        aead = _AEADS[keys.cipher]
        self.encrypt = aead(keys.send_key).encrypt
        self.decrypt = aead(keys.recv_key).decrypt
        self.peer = peer
        # The initiator learns the session works from the response; the
        # responder only once the first data packet arrives on it.
        self.confirmed = keys.is_initiator
        self.rekey_at = now + REKEY_AFTER_TIME  # the peer sets its own schedule
        self._header_prefix = wire.DATA_PREFIX + keys.remote_index.to_bytes(4, "little")

    def seal(self, plaintext: bytes) -> bytes:
        """Build a transport data packet for ``plaintext`` (empty = keepalive)."""
        c = self.send_counter
        self.send_counter = c + 1
        ctr = c.to_bytes(8, "little")
        header = self._header_prefix + ctr
        return header + self.encrypt(b"\x00\x00\x00\x00" + ctr, plaintext, header)

    def open(self, packet: bytes) -> bytes | None:
        """Decrypt a data packet addressed to this session; None if forged or replayed.

        Slow-path helper for tests and tools; the engine inlines the same steps.
        """
        mv = memoryview(packet)
        try:
            pt = self.decrypt(b"\x00\x00\x00\x00" + packet[8:16], mv[16:], mv[:16])
        except InvalidTag:
            return None
        if not self.replay.check(int.from_bytes(packet[8:16], "little")):
            return None
        return pt

    def expired(self, now: float) -> bool:
        return (now - self.created >= REJECT_AFTER_TIME
                or self.send_counter >= REJECT_AFTER_MESSAGES)
