"""Relay wire format and the relay's forwarding rules (sans-IO).

A relay forwards sealed Shoal packets between nodes that the coordination
server vouches for; it never sees inside them. The server hands each node a
short-lived grant over the encrypted control channel::

    token = HMAC-SHA256(secret, "shoal relay v2" | node key | expires u64 | n u8 | tags)

``tags`` are the node's networks (``network_tag(name)``, 8 bytes each, at most
``MAX_TAGS``). The node proves it holds the token without sending it; the
relay recomputes it from the shared secret. Two nodes are relayed to each other
only when their grants share a tag: the relay learns the allowed pairs from
the grants, with no query to the server.

Messages (UDP datagrams; over TCP each is prefixed by a u16 length)::

    ALLOC     "SR" 0x06 | node key (32) | expires u64 | timestamp_ms u64 | cookie (16)
              | n u8 | n x network tag (8) | mac (16)
              mac = HMAC-SHA256(token, "alloc" | every byte from the node key to the mac)[:16]
    ALLOCED   "SR" 0x02 | timestamp_ms u64 (echoed)
    SEND      "SR" 0x03 | destination id (8) | payload
    DATA      "SR" 0x04 | source id (8) | payload
    REFUSED   "SR" 0x05 | reason u8   (1 bad grant, 2 expired, 3 not registered,
                                       4 revoked, 5 relay full)
    CHALLENGE "SR" 0x07 | timestamp_ms u64 (echoed) | cookie (16)
    REVOKE    "SR" 0x08 | node key (32) | revoked_at u64 | timestamp_ms u64 | mac (16)
              mac = HMAC-SHA256(secret, "shoal relay revoke" | node key .. timestamp_ms)[:16]
    REVOKED   "SR" 0x09 | timestamp_ms u64 (echoed) | mac (16)
              mac = HMAC-SHA256(secret, "shoal relay revoked" | node key | timestamp_ms)[:16]

(Kind 0x01 was the first version's ALLOC, without tags or cookie: refused.)

An id is the first 8 bytes of BLAKE2s(node key), short so a relayed packet of
a 1420-byte interface MTU still fits a 1500-byte path.

Rules:

* ALLOC registers (or refreshes) the sender's address for its key. A UDP
  source address that is not already bound to that key must first prove it
  receives what is sent to it (return routability, as in QUIC's address
  validation): the relay answers with a CHALLENGE carrying a stateless cookie
  ``HMAC(cookie secret, key | address | minute)``, and binds the address only
  when an ALLOC echoes it. A spoofed source never sees the cookie, so it can
  neither move a binding nor relabel another node's traffic. TCP connections
  are routable by their handshake (``routable=True``).
* SEND is accepted only from a registered address and forwarded only to a
  registered destination whose grant shares a network with the sender's,
  within the sender's byte-rate budget.
* Registrations lapse after ``REGISTRATION_TTL`` without traffic, and are
  bounded (``max_registrations``). ``revoke(key)`` (logout, eviction) drops a
  registration and refuses every grant issued before that second.
* REVOKE comes from a coordination server holding the secret (a node logged
  out or lost a network): the relay applies ``revoke`` at once and confirms
  with REVOKED, so a standalone relay need not wait for the old grant to lapse.
  A replayed REVOKE changes nothing: it refuses only grants issued before its
  ``revoked_at``, which the first copy already refused.
* Replies are never larger than the request that caused them (no amplification).

Front ends: an address is ``(front end, where)``, e.g. ``("udp", (ip, port))``,
``("tcp", conn)``, ``("wss", conn)``. A node may be registered on several front
ends at once (its relay client on UDP and its WSS client), at most one address
per front end: an ALLOC from a new address on the same front end moves that
registration (a NAT rebind, a reconnect). Packets for a node go to its *active*
registration: the one it last sent a SEND from or last added or moved (a
client that just connected is the way in use), or the one refreshed while the
active one has gone quiet (``ACTIVE_QUIET``). So the relay answers a node on
whichever way it is using now.

Replay: an ALLOC must carry a newer timestamp than every ALLOC accepted for
that key before it may add or move a registration, and newer than its own
registration's last one to refresh it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

MAGIC = b"SR"
ALLOC_V1, ALLOCED, SEND, DATA, REFUSED, ALLOC, CHALLENGE, REVOKE, REVOKED = range(1, 10)
ALLOC_HEAD = struct.Struct(">2sB32sQQ16sB")
REVOKE_HEAD = struct.Struct(">2sB32sQQ")
REVOKED_HEAD = struct.Struct(">2sBQ")
ALLOCED_MSG = struct.Struct(">2sBQ")
CHALLENGE_MSG = struct.Struct(">2sBQ16s")
ID_LEN = 8
TAG_LEN = 8
MAC_LEN = 16
COOKIE_LEN = 16
MAX_TAGS = 64
HEADER_LEN = 3 + ID_LEN
REGISTRATION_TTL = 60.0
ACTIVE_QUIET = 20.0      # an active registration silent this long yields to a fresh ALLOC
CLOCK_SKEW_MS = 120_000
COOKIE_PERIOD = 60.0
NO_COOKIE = bytes(COOKIE_LEN)
(REFUSE_BAD_GRANT, REFUSE_EXPIRED, REFUSE_NOT_REGISTERED, REFUSE_REVOKED,
 REFUSE_FULL) = 1, 2, 3, 4, 5


def node_id(public_key: bytes) -> bytes:
    return hashlib.blake2s(public_key, digest_size=ID_LEN).digest()


def network_tag(name: str) -> bytes:
    """What a grant says about one network: 8 bytes, the name itself stays with the server."""
    return hashlib.blake2s(name.encode(), digest_size=TAG_LEN, person=b"shoalnet").digest()


def _tag_bytes(tags: Iterable[bytes]) -> bytes:
    t = sorted(set(tags))[:MAX_TAGS]
    return bytes((len(t),)) + b"".join(t)


def make_token(secret: bytes, public_key: bytes, expires: int, tags: Iterable[bytes] = ()
               ) -> bytes:
    return hmac.new(secret, b"shoal relay v2" + public_key + expires.to_bytes(8, "big")
                    + _tag_bytes(tags), hashlib.sha256).digest()


def encode_alloc(token: bytes, key: bytes, expires: int, ts_ms: int,
                 tags: Iterable[bytes] = (), cookie: bytes = NO_COOKIE) -> bytes:
    tb = _tag_bytes(tags)
    body = ALLOC_HEAD.pack(MAGIC, ALLOC, key, expires, ts_ms, cookie, tb[0]) + tb[1:]
    return body + hmac.new(token, b"alloc" + body[3:], hashlib.sha256).digest()[:MAC_LEN]


@dataclass(frozen=True)
class AllocMsg:
    key: bytes
    expires: int
    ts_ms: int
    cookie: bytes
    tags: frozenset[bytes]
    tag_bytes: bytes       # as sent (count and tags), for the token
    signed: bytes          # the bytes the mac covers
    mac: bytes


def decode_alloc(data: bytes) -> AllocMsg | None:
    """An ALLOC's fields, or None if it does not parse (trailing bytes are ignored)."""
    if len(data) < ALLOC_HEAD.size + MAC_LEN or data[:3] != b"SR\x06":
        return None
    _, _, key, expires, ts_ms, cookie, n = ALLOC_HEAD.unpack_from(data)
    if n > MAX_TAGS:
        return None
    end = ALLOC_HEAD.size + n * TAG_LEN
    if len(data) < end + MAC_LEN:
        return None
    raw = data[ALLOC_HEAD.size:end]
    tags = frozenset(raw[i:i + TAG_LEN] for i in range(0, len(raw), TAG_LEN))
    return AllocMsg(key, expires, ts_ms, cookie, tags, data[ALLOC_HEAD.size - 1:end],
                    data[3:end], data[end:end + MAC_LEN])


def encode_alloced(ts_ms: int) -> bytes:
    return ALLOCED_MSG.pack(MAGIC, ALLOCED, ts_ms)


def encode_challenge(ts_ms: int, cookie: bytes) -> bytes:
    return CHALLENGE_MSG.pack(MAGIC, CHALLENGE, ts_ms, cookie)


def decode_challenge(data: bytes) -> tuple[int, bytes] | None:
    if len(data) < CHALLENGE_MSG.size or data[:3] != b"SR\x07":
        return None
    _, _, ts, cookie = CHALLENGE_MSG.unpack_from(data)
    return ts, cookie


def encode_revoke(secret: bytes, key: bytes, revoked_at: int, ts_ms: int) -> bytes:
    body = REVOKE_HEAD.pack(MAGIC, REVOKE, key, revoked_at, ts_ms)
    return body + hmac.new(secret, b"shoal relay revoke" + body[3:], hashlib.sha256
                           ).digest()[:MAC_LEN]


def decode_revoke(secret: bytes, data: bytes) -> tuple[bytes, int, int] | None:
    """(node key, revoked_at, timestamp_ms) of a REVOKE made with ``secret``, else None."""
    if len(data) != REVOKE_HEAD.size + MAC_LEN or data[:3] != b"SR\x08":
        return None
    want = hmac.new(secret, b"shoal relay revoke" + data[3:REVOKE_HEAD.size], hashlib.sha256
                    ).digest()[:MAC_LEN]
    if not hmac.compare_digest(want, data[REVOKE_HEAD.size:]):
        return None
    _, _, key, revoked_at, ts_ms = REVOKE_HEAD.unpack_from(data)
    return key, revoked_at, ts_ms


def encode_revoked(secret: bytes, key: bytes, ts_ms: int) -> bytes:
    body = REVOKED_HEAD.pack(MAGIC, REVOKED, ts_ms)
    return body + hmac.new(secret, b"shoal relay revoked" + key + body[3:], hashlib.sha256
                           ).digest()[:MAC_LEN]


def check_revoked(secret: bytes, key: bytes, ts_ms: int, data: bytes) -> bool:
    """Is ``data`` the relay's confirmation of the REVOKE of ``key`` sent at ``ts_ms``?"""
    return hmac.compare_digest(data, encode_revoked(secret, key, ts_ms))


def encode_send(dst: bytes, payload: bytes) -> bytes:
    return b"SR\x03" + dst + payload


def encode_refused(reason: int) -> bytes:
    return bytes((0x53, 0x52, REFUSED, reason))


@dataclass
class Registration:
    key: bytes
    addr: Hashable               # UDP source address, or a TCP connection object
    expires: int                 # grant expiry (unix seconds)
    last_ts: int                 # newest ALLOC timestamp accepted (replay protection)
    seen: float                  # last time we heard from it (monotonic)
    tokens: float                # byte budget (token bucket)
    refilled: float
    tags: frozenset[bytes] = frozenset()   # networks of its grant


@dataclass
class RelayCounters:
    forwarded: int = 0
    forwarded_bytes: int = 0
    dropped_malformed: int = 0
    dropped_unregistered: int = 0
    dropped_no_destination: int = 0
    dropped_no_shared_network: int = 0
    dropped_rate: int = 0
    refused: int = 0
    challenged: int = 0
    revoked: int = 0
    full: int = 0


def front_end(addr: Hashable) -> Hashable:
    """The front end an address belongs to (``"udp"``, ``"tcp"``, ``"wss"``...)."""
    return addr[0] if isinstance(addr, tuple) and addr else None


@dataclass
class RelayCore:
    """Forwarding state of one relay (shared by all its front ends)."""

    secret: bytes
    rate_bytes_per_s: float = 12_500_000.0   # 100 Mbit/s per node
    burst_bytes: float = 2_000_000.0
    max_registrations: int = 65_536
    grant_lifetime: int = 600                # seconds: revocations are kept this long
    #: node id -> its active registration (where packets for it go)
    by_id: dict[bytes, Registration] = field(default_factory=dict)
    #: every registered address (a node has at most one per front end)
    by_addr: dict[Hashable, Registration] = field(default_factory=dict)
    #: node id -> front end -> registration
    sides: dict[bytes, dict[Hashable, Registration]] = field(default_factory=dict)
    #: node id -> revoked at (unix seconds): grants issued before are refused
    revoked: dict[bytes, int] = field(default_factory=dict)
    counters: RelayCounters = field(default_factory=RelayCounters)
    cookie_secret: bytes = field(default_factory=lambda: os.urandom(32))

    def handle(self, data: bytes, addr: Hashable, now: float, wall: float,
               routable: bool = False) -> list[tuple[Hashable, bytes]]:
        """One message from ``addr``; returns (destination address, message) to send.

        ``routable``: the address is known to receive what is sent to it (a TCP
        or WebSocket connection), so no return-routability challenge is needed.
        """
        if len(data) < 3 or data[:2] != MAGIC:
            self.counters.dropped_malformed += 1
            return []
        kind = data[2]
        if kind == SEND:
            return self._send(data, addr, now)
        if kind == ALLOC:
            return self._alloc(data, addr, now, wall, routable)
        if kind == ALLOC_V1:
            self.counters.refused += 1
            return [(addr, encode_refused(REFUSE_BAD_GRANT))]
        if kind == REVOKE:
            return self._revoke_msg(data, addr, wall)
        self.counters.dropped_malformed += 1
        return []

    def _revoke_msg(self, data: bytes, addr: Hashable, wall: float
                    ) -> list[tuple[Hashable, bytes]]:
        r = decode_revoke(self.secret, data)
        if r is None or abs(r[2] - wall * 1000) > CLOCK_SKEW_MS \
                or r[1] > wall + CLOCK_SKEW_MS / 1000:
            self.counters.dropped_malformed += 1
            return []
        key, revoked_at, ts_ms = r
        self.revoke(key, revoked_at)
        return [(addr, encode_revoked(self.secret, key, ts_ms))]

    def cookie(self, key: bytes, addr: Hashable, wall: float, back: int = 0) -> bytes:
        period = int(wall // COOKIE_PERIOD) - back
        msg = key + repr(addr).encode() + period.to_bytes(8, "big", signed=True)
        return hmac.new(self.cookie_secret, msg, hashlib.sha256).digest()[:COOKIE_LEN]

    def _alloc(self, data: bytes, addr: Hashable, now: float, wall: float, routable: bool
               ) -> list[tuple[Hashable, bytes]]:
        a = decode_alloc(data)
        if a is None:
            self.counters.dropped_malformed += 1
            return []
        token = hmac.new(self.secret, b"shoal relay v2" + a.key + a.expires.to_bytes(8, "big")
                         + a.tag_bytes, hashlib.sha256).digest()
        want = hmac.new(token, b"alloc" + a.signed, hashlib.sha256).digest()[:MAC_LEN]
        if not hmac.compare_digest(a.mac, want):
            self.counters.refused += 1
            return [(addr, encode_refused(REFUSE_BAD_GRANT))]
        key, expires, ts_ms = a.key, a.expires, a.ts_ms
        if expires < wall or abs(ts_ms - wall * 1000) > CLOCK_SKEW_MS:
            self.counters.refused += 1
            return [(addr, encode_refused(REFUSE_EXPIRED))]
        revoked_at = self.revoked.get(node_id(key))
        if revoked_at is not None and expires - self.grant_lifetime < revoked_at:
            self.counters.refused += 1
            return [(addr, encode_refused(REFUSE_REVOKED))]
        nid = node_id(key)
        sides = self.sides.setdefault(nid, {})
        fe = front_end(addr)
        reg = sides.get(fe)
        fresh = reg is None or reg.addr != addr
        if not fresh:
            assert reg is not None
            if ts_ms <= reg.last_ts:
                self.counters.refused += 1
                return []
        else:
            # a new address for this key: must be newer than anything seen for the key,
            # so a replayed ALLOC can neither add nor move a registration
            if ts_ms <= max((r.last_ts for r in sides.values()), default=-1):
                self.counters.refused += 1
                return []
            if not routable and not any(
                    hmac.compare_digest(a.cookie, self.cookie(key, addr, wall, back))
                    for back in (0, 1)):
                # return routability: bind this address only once it echoes a cookie
                # sent to it, so a spoofed source can neither move nor take a binding
                self.counters.challenged += 1
                if not sides:
                    del self.sides[nid]
                return [(addr, encode_challenge(ts_ms, self.cookie(key, addr, wall)))]
            if reg is None and len(self.by_addr) >= self.max_registrations:
                self.expire(now)
                if len(self.by_addr) >= self.max_registrations:
                    self.counters.full += 1
                    if not sides:
                        self.sides.pop(nid, None)
                    return [(addr, encode_refused(REFUSE_FULL))]
                sides = self.sides.setdefault(nid, {})
            old = self.by_addr.get(addr)
            if old is not None:  # another key moved onto this address
                self._drop(old)
            if reg is not None:  # same front end, new address: the registration moves
                self.by_addr.pop(reg.addr, None)
                reg.addr = addr
            else:
                reg = Registration(key, addr, expires, ts_ms, now, self.burst_bytes, now)
                sides[fe] = reg
            self.by_addr[addr] = reg
        reg.expires, reg.last_ts, reg.seen, reg.tags = expires, ts_ms, now, a.tags
        active = self.by_id.get(nid)
        if fresh or active is None or now - active.seen > ACTIVE_QUIET:
            self.by_id[nid] = reg
        return [(addr, encode_alloced(ts_ms))]

    def _send(self, data: bytes, addr: Hashable, now: float) -> list[tuple[Hashable, bytes]]:
        if len(data) < HEADER_LEN:
            self.counters.dropped_malformed += 1
            return []
        src = self.by_addr.get(addr)
        if src is None or now - src.seen > REGISTRATION_TTL:
            self.counters.dropped_unregistered += 1
            return [(addr, encode_refused(REFUSE_NOT_REGISTERED))] if src is None else []
        dst = self.by_id.get(data[3:HEADER_LEN])
        if dst is None or now - dst.seen > REGISTRATION_TTL:
            self.counters.dropped_no_destination += 1
            return []
        if src.tags.isdisjoint(dst.tags):
            self.counters.dropped_no_shared_network += 1
            return []
        n = len(data) - HEADER_LEN
        src.tokens = min(self.burst_bytes, src.tokens + (now - src.refilled) * self.rate_bytes_per_s)
        src.refilled = now
        if src.tokens < n:
            self.counters.dropped_rate += 1
            return []
        src.tokens -= n
        src.seen = now
        sid = node_id(src.key)
        if self.by_id.get(sid) is not src:
            self.by_id[sid] = src   # the node sends this way now: answer it this way
        self.counters.forwarded += 1
        self.counters.forwarded_bytes += n
        return [(dst.addr, b"SR\x04" + sid + data[HEADER_LEN:])]

    def _drop(self, reg: Registration) -> None:
        """Remove one registration; another of the same node (newest seen) becomes active."""
        self.by_addr.pop(reg.addr, None)
        nid = node_id(reg.key)
        sides = self.sides.get(nid, {})
        if sides.get(front_end(reg.addr)) is reg:
            del sides[front_end(reg.addr)]
        if self.by_id.get(nid) is reg:
            del self.by_id[nid]
            if sides:
                self.by_id[nid] = max(sides.values(), key=lambda r: r.seen)
        if not sides:
            self.sides.pop(nid, None)

    def forget(self, addr: Hashable) -> None:
        """A connection (TCP, WSS) closed: drop its registration."""
        reg = self.by_addr.get(addr)
        if reg is not None:
            self._drop(reg)

    def revoke(self, public_key: bytes, wall: float) -> None:
        """Logout or eviction at ``wall``: drop the node's registrations made with grants
        issued before it, and refuse such grants from now on (a revocation never
        reaches back past a later one, nor touches a grant issued after it)."""
        nid = node_id(public_key)
        at = max(int(wall), self.revoked.get(nid, 0))
        self.revoked[nid] = at
        self.counters.revoked += 1
        for reg in list(self.sides.get(nid, {}).values()):
            if reg.expires - self.grant_lifetime < at:
                self._drop(reg)
        if len(self.revoked) > self.max_registrations:
            self._expire_revocations(wall)

    def _expire_revocations(self, wall: float) -> None:
        cutoff = wall - self.grant_lifetime - CLOCK_SKEW_MS / 1000
        self.revoked = {k: t for k, t in self.revoked.items() if t > cutoff}

    def expire(self, now: float, wall: float | None = None) -> None:
        for reg in list(self.by_addr.values()):
            if now - reg.seen > REGISTRATION_TTL:
                self._drop(reg)
        if wall is not None:
            self._expire_revocations(wall)
