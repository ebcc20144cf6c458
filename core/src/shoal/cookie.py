"""Handshake DoS defence: MAC1, MAC2 and cookie replies, as sans-IO pieces.

The design is WireGuard's (whitepaper §5.3 "Denial of Service Mitigation &
Cookies", §5.4.4 and §5.4.7), adapted to Shoal's packets:

* Every handshake message ends with ``mac1 || mac2`` (16 bytes each).
  ``mac1 = BLAKE2s-128(key=BLAKE2s-256("mac1----" || receiver_public), msg)``
  over everything before it. Only someone who knows the receiver's public key
  can make one, and checking it costs one BLAKE2s, so a flood of random
  contents is dropped before any Diffie-Hellman.
* Under load, the responder also wants ``mac2 = BLAKE2s-128(key=cookie,
  msg || mac1)``, where ``cookie = BLAKE2s-128(key=secret, source address)``
  and ``secret`` is random and rotates every two minutes. An initiation
  without a valid mac2 gets a *cookie reply* instead of a handshake: the cookie
  sealed under ``BLAKE2s-256("cookie--" || responder_public)`` with the
  initiation's mac1 as associated data. The initiator keeps the cookie for
  two minutes and puts it in mac2 of its next initiations. A flood from
  spoofed sources never sees its cookies, so it stays cheap to refuse.
* A per-source token bucket bounds how many initiations one address may
  have answered per second, whatever their MACs.

Differences from WireGuard, on purpose: the cookie reply is sealed with
ChaCha20-Poly1305 and a random 96-bit nonce rather than XChaCha20-Poly1305
(the ``cryptography`` package offers no XChaCha; the key is per responder and
a nonce repeats after ~2^48 replies, centuries at any flood rate), and the
source address of a datagram is the transport's endpoint value, whatever it
is (an (ip, port) pair for UDP, a relay's identifier for a relay).

Cookie reply (type 3)::

    0      1      2      4          8                20                   52
    +------+------+------+----------+----------------+--------------------+
    | 0x03 | 0x02 | 0000 | receiver | nonce (12 B)   | AEAD(cookie) 32 B  |
    +------+------+------+----------+----------------+--------------------+

``receiver`` is the sender index of the initiation being answered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from shoal import wire

MAC_LEN = 16
MACS_LEN = 2 * MAC_LEN
COOKIE_LEN = 16
NONCE_LEN = 12
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"

#: the responder's cookie secret changes this often (seconds)
SECRET_LIFETIME = 120.0
#: an initiator uses a received cookie for this long (a little less than the secret)
COOKIE_LIFETIME = SECRET_LIFETIME - 5.0

ZERO_MAC = bytes(MAC_LEN)


def _blake2s(data: bytes, key: bytes = b"", size: int = 32) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=size).digest()


def mac1_key(public: bytes) -> bytes:
    return _blake2s(LABEL_MAC1 + public)


def cookie_key(public: bytes) -> bytes:
    return _blake2s(LABEL_COOKIE + public)


def source_bytes(addr: object) -> bytes:
    """A stable byte string for a transport endpoint (an (ip, port) pair or other)."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}|{addr[1]}".encode()
    return repr(addr).encode()


def source_host(addr: object) -> object:
    """What a per-source limit counts by: the IP of an (ip, port) pair, else the endpoint."""
    if isinstance(addr, tuple) and addr:
        return addr[0]
    return addr


class MacSealer:
    """Appends ``mac1 || mac2`` to handshake messages for one receiver (initiator or responder
    side), remembering a cookie that receiver sent us."""

    __slots__ = ("_cookie", "_cookie_key", "_cookie_until", "_mac1_key", "last_mac1")

    def __init__(self, receiver_public: bytes) -> None:
        self._mac1_key = mac1_key(receiver_public)
        self._cookie_key = cookie_key(receiver_public)
        self._cookie: bytes | None = None
        self._cookie_until = 0.0
        self.last_mac1 = ZERO_MAC  # of the latest message sealed (a reply must quote it)

    def seal(self, body: bytes, now: float) -> bytes:
        m1 = _blake2s(body, self._mac1_key, MAC_LEN)
        self.last_mac1 = m1
        if self._cookie is not None and now < self._cookie_until:
            m2 = _blake2s(body + m1, self._cookie, MAC_LEN)
        else:
            m2 = ZERO_MAC
        return body + m1 + m2

    def consume_reply(self, reply: bytes, now: float) -> bool:
        """Take the cookie from a cookie reply to the latest message; False if it does not open."""
        if len(reply) < wire.COOKIE_REPLY_LEN:
            return False
        nonce = reply[8:8 + NONCE_LEN]
        try:
            cookie = ChaCha20Poly1305(self._cookie_key).decrypt(
                nonce, reply[8 + NONCE_LEN:wire.COOKIE_REPLY_LEN], self.last_mac1)
        except InvalidTag:
            return False
        self._cookie = cookie
        self._cookie_until = now + COOKIE_LIFETIME
        return True

    @property
    def has_cookie(self) -> bool:
        return self._cookie is not None


class Verdict(Enum):
    """What the responder does with an initiation whose mac1 is valid."""

    ACCEPT = "accept"        # go on with the handshake
    COOKIE = "cookie"        # under load and no valid mac2: answer with a cookie reply
    RATE_LIMITED = "rate-limited"  # this source sent too many: drop


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class GuardStats:
    bad_mac1: int = 0
    cookies_sent: int = 0
    rate_limited: int = 0
    queue_full: int = 0


@dataclass
class CookieChecker:
    """The responder's side: checks MACs, decides on cookies and rate limits.

    ``under_load`` is set by the caller (the engine knows its handshake
    backlog); it stays set for ``LOAD_HOLD`` seconds after the last time it
    was asked for, as in WireGuard, so a flood that pauses briefly does not
    get free handshakes.
    """

    local_public: bytes
    clock: Callable[[], float]
    rate: float = 20.0            # initiations per second per source host
    burst: float = 40.0
    max_sources: int = 4096       # bounded table of per-source buckets
    rng: Callable[[int], bytes] = secrets.token_bytes
    stats: GuardStats = field(default_factory=GuardStats)

    LOAD_HOLD = 1.0

    def __post_init__(self) -> None:
        self._mac1_key = mac1_key(self.local_public)
        self._reply_aead = ChaCha20Poly1305(cookie_key(self.local_public))
        self._secret = self.rng(32)
        self._secret_at = self.clock()
        self._buckets: OrderedDict[object, _Bucket] = OrderedDict()
        self._load_until = 0.0

    # ------------------------------------------------------------ MACs
    def check_mac1(self, packet: bytes) -> bool:
        """``packet`` is a whole handshake message ending in mac1 || mac2."""
        if len(packet) < MACS_LEN + 4:
            return False
        body_end = len(packet) - MACS_LEN
        m1 = hashlib.blake2s(memoryview(packet)[:body_end], key=self._mac1_key,
                             digest_size=MAC_LEN).digest()
        ok = hmac.compare_digest(m1, packet[body_end:body_end + MAC_LEN])
        if not ok:
            self.stats.bad_mac1 += 1
        return ok

    def _cookie_for(self, addr: object) -> bytes:
        now = self.clock()
        if now - self._secret_at >= SECRET_LIFETIME:
            self._secret = self.rng(32)
            self._secret_at = now
        return _blake2s(source_bytes(addr), self._secret, COOKIE_LEN)

    def check_mac2(self, packet: bytes, addr: object) -> bool:
        end = len(packet) - MAC_LEN
        m2 = _blake2s(packet[:end], self._cookie_for(addr), MAC_LEN)
        return hmac.compare_digest(m2, packet[end:])

    # ------------------------------------------------------------ decisions
    def note_load(self, loaded: bool) -> None:
        if loaded:
            self._load_until = self.clock() + self.LOAD_HOLD

    @property
    def under_load(self) -> bool:
        return self.clock() < self._load_until

    def admit(self, packet: bytes, addr: object) -> Verdict:
        """Call after ``check_mac1`` passed."""
        if self.under_load and not self.check_mac2(packet, addr):
            self.stats.cookies_sent += 1
            return Verdict.COOKIE
        if not self._take_token(source_host(addr)):
            self.stats.rate_limited += 1
            return Verdict.RATE_LIMITED
        return Verdict.ACCEPT

    def _take_token(self, key: object) -> bool:
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)  # forget the least recently seen source
            b = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def cookie_reply(self, packet: bytes, sender_index: int, addr: object) -> bytes:
        """The cookie reply to an initiation (its mac1 is the associated data)."""
        end = len(packet) - MACS_LEN
        mac1 = packet[end:end + MAC_LEN]
        nonce = self.rng(NONCE_LEN)
        sealed = self._reply_aead.encrypt(nonce, self._cookie_for(addr), mac1)
        return wire.encode_cookie_reply(sender_index, nonce + sealed)

    def sources_tracked(self) -> int:
        return len(self._buckets)
