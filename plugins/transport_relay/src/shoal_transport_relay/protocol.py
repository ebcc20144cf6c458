"""Relay wire format and the relay's forwarding rules (sans-IO).

A relay forwards sealed Shoal packets between nodes that the coordination
server vouches for; it never sees inside them. The server hands each node a
grant over the encrypted control channel: ``token = HMAC-SHA256(secret,
"shoal relay v1" | node key | expires)``. The node proves it holds the token
without sending it; the relay recomputes it from the shared secret.

Messages (UDP datagrams; over TCP each is prefixed by a u16 length)::

    ALLOC   "SR" 0x01 | node key (32) | expires u64 | timestamp_ms u64 | mac (16)
            mac = HMAC-SHA256(token, "alloc" | key | expires | timestamp_ms)[:16]
    ALLOCED "SR" 0x02 | timestamp_ms u64 (echoed)
    SEND    "SR" 0x03 | destination id (8) | payload
    DATA    "SR" 0x04 | source id (8) | payload
    REFUSED "SR" 0x05 | reason u8     (1 bad grant, 2 expired, 3 not registered)

An id is the first 8 bytes of BLAKE2s(node key), short so a relayed packet of
a 1420-byte interface MTU still fits a 1500-byte path. ALLOC registers (or
refreshes) the sender's address for its key; SEND is accepted only from a
registered address and forwarded only to a registered destination, within the
sender's byte-rate budget. Registrations lapse after ``REGISTRATION_TTL``.

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
import struct
from collections.abc import Hashable
from dataclasses import dataclass, field

MAGIC = b"SR"
ALLOC, ALLOCED, SEND, DATA, REFUSED = 1, 2, 3, 4, 5
ALLOC_MSG = struct.Struct(">2sB32sQQ16s")
ALLOCED_MSG = struct.Struct(">2sBQ")
ID_LEN = 8
HEADER_LEN = 3 + ID_LEN
REGISTRATION_TTL = 60.0
ACTIVE_QUIET = 20.0      # an active registration silent this long yields to a fresh ALLOC
CLOCK_SKEW_MS = 120_000
REFUSE_BAD_GRANT, REFUSE_EXPIRED, REFUSE_NOT_REGISTERED = 1, 2, 3


def node_id(public_key: bytes) -> bytes:
    return hashlib.blake2s(public_key, digest_size=ID_LEN).digest()


def make_token(secret: bytes, public_key: bytes, expires: int) -> bytes:
    return hmac.new(secret, b"shoal relay v1" + public_key + expires.to_bytes(8, "big"),
                    hashlib.sha256).digest()


def _alloc_mac(token: bytes, key: bytes, expires: int, ts_ms: int) -> bytes:
    msg = b"alloc" + key + expires.to_bytes(8, "big") + ts_ms.to_bytes(8, "big")
    return hmac.new(token, msg, hashlib.sha256).digest()[:16]


def encode_alloc(token: bytes, key: bytes, expires: int, ts_ms: int) -> bytes:
    return ALLOC_MSG.pack(MAGIC, ALLOC, key, expires, ts_ms, _alloc_mac(token, key, expires, ts_ms))


def encode_alloced(ts_ms: int) -> bytes:
    return ALLOCED_MSG.pack(MAGIC, ALLOCED, ts_ms)


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


@dataclass
class RelayCounters:
    forwarded: int = 0
    forwarded_bytes: int = 0
    dropped_malformed: int = 0
    dropped_unregistered: int = 0
    dropped_no_destination: int = 0
    dropped_rate: int = 0
    refused: int = 0


def front_end(addr: Hashable) -> Hashable:
    """The front end an address belongs to (``"udp"``, ``"tcp"``, ``"wss"``...)."""
    return addr[0] if isinstance(addr, tuple) and addr else None


@dataclass
class RelayCore:
    """Forwarding state of one relay (shared by all its front ends)."""

    secret: bytes
    rate_bytes_per_s: float = 12_500_000.0   # 100 Mbit/s per node
    burst_bytes: float = 2_000_000.0
    #: node id -> its active registration (where packets for it go)
    by_id: dict[bytes, Registration] = field(default_factory=dict)
    #: every registered address (a node has at most one per front end)
    by_addr: dict[Hashable, Registration] = field(default_factory=dict)
    #: node id -> front end -> registration
    sides: dict[bytes, dict[Hashable, Registration]] = field(default_factory=dict)
    counters: RelayCounters = field(default_factory=RelayCounters)

    def handle(self, data: bytes, addr: Hashable, now: float, wall: float
               ) -> list[tuple[Hashable, bytes]]:
        """One message from ``addr``; returns (destination address, message) to send."""
        if len(data) < 3 or data[:2] != MAGIC:
            self.counters.dropped_malformed += 1
            return []
        kind = data[2]
        if kind == SEND:
            return self._send(data, addr, now)
        if kind == ALLOC:
            return self._alloc(data, addr, now, wall)
        self.counters.dropped_malformed += 1
        return []

    def _alloc(self, data: bytes, addr: Hashable, now: float, wall: float
               ) -> list[tuple[Hashable, bytes]]:
        if len(data) < ALLOC_MSG.size:
            self.counters.dropped_malformed += 1
            return []
        _, _, key, expires, ts_ms, mac = ALLOC_MSG.unpack_from(data)
        token = make_token(self.secret, key, expires)
        if not hmac.compare_digest(mac, _alloc_mac(token, key, expires, ts_ms)):
            self.counters.refused += 1
            return [(addr, encode_refused(REFUSE_BAD_GRANT))]
        if expires < wall or abs(ts_ms - wall * 1000) > CLOCK_SKEW_MS:
            self.counters.refused += 1
            return [(addr, encode_refused(REFUSE_EXPIRED))]
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
        reg.expires, reg.last_ts, reg.seen = expires, ts_ms, now
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

    def expire(self, now: float) -> None:
        for reg in list(self.by_addr.values()):
            if now - reg.seen > REGISTRATION_TTL:
                self._drop(reg)
