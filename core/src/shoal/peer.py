"""One remote peer: its sessions, handshake attempts and timers (sans-IO).

Session rotation follows WireGuard (whitepaper §5.4.6, §6):

* ``current`` carries outgoing data; ``previous`` still decrypts packets that
  were in flight when a rekey happened; ``next`` is a responder-side session
  that becomes ``current`` when the first packet arrives on it (proof that
  the initiator has it too). So a rekey loses no traffic.
* The initiator of the current session rekeys after ``rekey_after_time`` or
  ``rekey_after_messages``; a session is dropped after ``REJECT_AFTER_TIME``.

Named timers (``tick``), evaluated against an injected ``now``:

=================  ===========================================================
handshake retry    no answer: resend with exponential backoff, jittered,
                   capped at ``HANDSHAKE_RETRY_MAX``; eager nodes never give up
keepalive          nothing sent for ``keepalive`` seconds: send an empty packet
                   (holds NAT mappings, tells the peer we are alive)
dead peer          sent data but heard nothing for ``DEAD_AFTER`` seconds:
                   start a fresh handshake
expiry             sessions older than ``REJECT_AFTER_TIME`` are dropped
=================  ===========================================================

Peers never touch sockets: methods return packets, the engine sends them.

The path (``path``: transport, endpoint, kind) changes only through
``set_path``, which logs the old path, the new one and why. ``via``,
``endpoint`` and ``send`` are read-only copies of it kept for the data path (one attribute load
each per packet instead of two).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from shoal import wire
from shoal.addressing import ipv6_for, mac_for_key
from shoal.cookie import MacSealer
from shoal.handshake import HandshakeError, Initiator, SessionKeys, new_index
from shoal.identity import StaticKeypair, encode_key
from shoal.path import Path, path_text
from shoal.routing.rules import SourceCheck
from shoal.session import REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, Session
from shoal.transport import Transport

log = logging.getLogger(__name__)

HANDSHAKE_RETRY_MIN = 1.0
HANDSHAKE_RETRY_MAX = 8.0
DEAD_AFTER = 15.0
#: When handshakes from both sides cross (both eager at start-up), both may end
#: up sending on a responder session. The responder side of a session rekeys
#: this much later than the initiator would, plus a random part of it, so one
#: side goes first and the next rekey does not cross again.
RESPONDER_REKEY_DELAY = 10.0
STAGED_MAX = 128

Endpoint = Any  # transport-specific address, e.g. ("198.51.100.2", 41641)


def _no_path(data: bytes, endpoint: Endpoint) -> None:
    raise OSError("no path to this peer yet")


def _no_path_many(datagrams: list[bytes], endpoint: Endpoint) -> None:
    raise OSError("no path to this peer yet")


class PeerState(Enum):
    IDLE = "idle"              # no session, not trying (no endpoint known)
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"


@dataclass
class Timers:
    rekey_after_time: float = REKEY_AFTER_TIME
    rekey_after_messages: int = REKEY_AFTER_MESSAGES
    keepalive: float = 10.0


class IndexTable:
    """Local receiver index -> session (or pending handshake). Shared by all peers."""

    def __init__(self) -> None:
        self.sessions: dict[int, Session] = {}
        self.pending: dict[int, Peer] = {}

    def taken(self, i: int) -> bool:
        return i in self.sessions or i in self.pending

    def allocate(self) -> int:
        return new_index(self.taken)


@dataclass
class PeerStats:
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    handshakes: int = 0
    rekeys: int = 0


class Peer:
    def __init__(self, name: str, public_key: bytes, virtual_ip: str, path: Path | None,
                 table: IndexTable, timers: Timers | None = None,
                 rng: Callable[[], float] = random.random) -> None:
        self.name = name
        self.public_key = public_key
        self.public_key_b64 = encode_key(public_key)
        self.mac = mac_for_key(public_key)
        # mac1/mac2 for handshake messages to this peer, and its cookie (cookie.py)
        self.macs = MacSealer(public_key)
        self.set_virtual_ip(virtual_ip)
        self.path: Path | None = None
        # Data-path copies of ``path``, written only by set_path:
        self.via: Transport | None = None          # == path.transport
        self.endpoint: Endpoint | None = None      # == path.endpoint
        self.send: Callable[[bytes, Endpoint], None] = _no_path  # == path.transport.send
        self.send_many: Callable[[list[bytes], Endpoint], None] = _no_path_many  # .send_many
        if path is not None:
            self.set_path(path, "configured")
        #: paths to try a handshake on while no tunnel is up (announced candidates)
        self.candidates: list[Path] = [] if path is None else [path]
        # LAN prefixes this peer is the approved gateway for: packets from them are its own.
        self.routed = SourceCheck()
        self.table = table
        self.timers = timers or Timers()
        self.rng = rng
        self.current: Session | None = None
        self.previous: Session | None = None
        self.next: Session | None = None
        self.initiator: Initiator | None = None
        self.handshake_started = 0.0
        self.handshake_next_at = 0.0
        self.handshake_attempts = 0
        self.last_init_timestamp = -1
        self.last_rx_time = -1e18
        self.last_tx_time = -1e18
        self.rtt_ms: float | None = None
        self.last_rx: Session | None = None  # session of the latest authenticated packet
        self.stats = PeerStats()
        self.staged: deque[bytes] = deque(maxlen=STAGED_MAX)
        # tick() compares these with the stats to learn about traffic without
        # the data path reading the clock per packet.
        self._seen_rx = 0
        self._seen_tx = 0
        self._tx_since_rx = False

    def set_virtual_ip(self, virtual_ip: str) -> None:
        self.virtual_ip = virtual_ip
        self.vip_packed = ipaddress.IPv4Address(virtual_ip).packed
        self.vip6_packed = ipaddress.IPv6Address(ipv6_for(virtual_ip)).packed

    # ------------------------------------------------------------ path
    def set_path(self, new: Path | None, reason: str) -> bool:
        """Move the peer to ``new``; the only place a peer's path changes. True if it did."""
        old = self.path
        if new == old:
            if new is not None:
                self.send = new.transport.send  # a transport may rebind send when it starts
                self.send_many = new.transport.send_many
            return False
        log.info("peer %s: path %s -> %s (%s)", self.name, path_text(old), path_text(new), reason)
        self.path = new
        if new is None:
            self.via, self.endpoint, self.send = None, None, _no_path
            self.send_many = _no_path_many
        else:
            self.via, self.endpoint, self.send = new.transport, new.endpoint, new.transport.send
            self.send_many = new.transport.send_many
        return True

    @property
    def tunnel_up(self) -> bool:
        return self.current is not None

    # ------------------------------------------------------------ state
    @property
    def state(self) -> PeerState:
        if self.current is not None:
            return PeerState.ESTABLISHED
        if self.initiator is not None:
            return PeerState.HANDSHAKING
        return PeerState.IDLE

    def _sessions(self) -> list[Session]:
        return [s for s in (self.current, self.previous, self.next) if s is not None]

    def _drop(self, s: Session | None) -> None:
        if s is not None:
            self.table.sessions.pop(s.local_index, None)

    # --------------------------------------------------------- handshakes
    def begin_handshake(self, local: StaticKeypair, now: float, timestamp_ns: int,
                        ciphers: tuple[int, ...]) -> bytes | None:
        """Start (or restart) a handshake; returns the initiation to send, if possible."""
        if self.path is None:
            if not self.candidates:
                return None
            self.set_path(self.candidates[0], "first announced candidate")
        if self.initiator is not None:
            self.table.pending.pop(self.initiator.local_index, None)
        idx = self.table.allocate()
        self.initiator = Initiator(local, self.public_key, idx, timestamp_ns, ciphers,
                                   self.macs, now)
        self.table.pending[idx] = self
        self.handshake_started = now
        delay = min(HANDSHAKE_RETRY_MAX, HANDSHAKE_RETRY_MIN * (2 ** self.handshake_attempts))
        self.handshake_next_at = now + delay * (0.8 + 0.4 * self.rng())
        self.handshake_attempts += 1
        log.debug("peer %s: handshake %08x sent (attempt %d)", self.name, idx,
                  self.handshake_attempts)
        return self.initiator.packet

    def on_response(self, msg: wire.HandshakeResp, now: float) -> Session:
        """Complete our handshake; raises HandshakeError if it does not authenticate."""
        init = self.initiator
        if init is None or init.local_index != msg.receiver:
            raise HandshakeError("no matching handshake in progress")
        keys = init.process_response(msg)
        self.table.pending.pop(init.local_index, None)
        self.initiator = None
        self.handshake_attempts = 0
        self.rtt_ms = (now - self.handshake_started) * 1000.0
        s = self._install(keys, now)
        self._rotate(s)  # the new initiator session carries data right away
        return s

    def accept_initiation(self, remote_static: bytes, timestamp_ns: int) -> bool:
        """Replay protection for initiations (TAI64N-like timestamp must grow)."""
        return remote_static == self.public_key and timestamp_ns > self.last_init_timestamp

    def on_initiation(self, keys: SessionKeys, timestamp_ns: int, now: float) -> Session:
        self.last_init_timestamp = timestamp_ns
        s = self._install(keys, now)
        self._drop(self.next)
        self.next = s
        return s

    def _install(self, keys: SessionKeys, now: float) -> Session:
        s = Session(keys, now, self)
        s.rekey_at = now + self.timers.rekey_after_time + (
            0.0 if keys.is_initiator else RESPONDER_REKEY_DELAY * (1.0 + self.rng()))
        self.table.sessions[s.local_index] = s
        self.stats.handshakes += 1
        if self.current is not None:
            self.stats.rekeys += 1
        return s

    def confirm_next(self) -> None:
        """First packet arrived on ``next``: the initiator has it, make it current."""
        s = self.next
        if s is None:
            return
        s.confirmed = True
        self.next = None
        self._rotate(s)
        if self.initiator is not None:  # a crossing handshake of ours is moot now
            self.table.pending.pop(self.initiator.local_index, None)
            self.initiator = None
            self.handshake_attempts = 0

    def _rotate(self, new: Session) -> None:
        """Make ``new`` current; keep for decryption the session the peer last sent on.

        That is usually the old current, but after crossed handshakes the peer
        may be sending on another one, and dropping it would lose its packets.
        """
        keep = self.last_rx
        if keep is None or keep is new or keep.local_index not in self.table.sessions:
            keep = self.current
        for old in (self.current, self.previous):
            if old is not None and old is not keep and old is not new and old is not self.next:
                self._drop(old)
        self.previous = keep if keep is not new else None
        self.current = new

    def take_staged(self) -> list[bytes]:
        out = list(self.staged)
        self.staged.clear()
        return out

    # -------------------------------------------------------------- timers
    def tick(self, now: float, local: StaticKeypair, timestamp_ns: int,
             ciphers: tuple[int, ...], eager: bool = True) -> list[bytes]:
        """Run the named timers; returns packets to send to ``self.endpoint``."""
        out: list[bytes] = []
        st = self.stats
        if st.rx_packets != self._seen_rx:
            self._seen_rx = st.rx_packets
            self.last_rx_time = now
            self._tx_since_rx = False
        if st.tx_packets != self._seen_tx:
            self._seen_tx = st.tx_packets
            self.last_tx_time = now
            self._tx_since_rx = True

        # expiry
        for attr in ("previous", "next", "current"):
            s = getattr(self, attr)
            if s is not None and s.expired(now):
                log.debug("peer %s: session %08x expired", self.name, s.local_index)
                self._drop(s)
                setattr(self, attr, None)

        cur = self.current
        want_handshake = False
        if cur is None:
            want_handshake = eager or bool(self.staged)
        else:
            if cur.send_counter >= self.timers.rekey_after_messages or now >= cur.rekey_at or self._tx_since_rx and now - self.last_rx_time >= DEAD_AFTER \
                    and now - cur.created >= DEAD_AFTER:
                want_handshake = True
        if want_handshake and self.endpoint is not None:
            if self.initiator is None or now >= self.handshake_next_at:
                pkt = self.begin_handshake(local, now, timestamp_ns, ciphers)
                if pkt is not None:
                    out.append(pkt)

        # keepalive on the current session
        cur = self.current
        if cur is not None and self.endpoint is not None and self.timers.keepalive > 0 \
                and now - self.last_tx_time >= self.timers.keepalive:
            out.append(cur.seal(b""))
            self.last_tx_time = now
        return out

    def unanswered_for(self, now: float) -> float:
        """Seconds this node has been sending to the peer without hearing back (0: it has
        heard from the peer since it last sent)."""
        return now - self.last_rx_time if self._tx_since_rx else 0.0

    def online(self, now: float) -> bool:
        if self.current is None:
            return False
        if self.stats.rx_packets != self._seen_rx:  # received since the last tick
            return True
        return now - self.last_rx_time < 2.5 * self.timers.keepalive + 5

    def expire_all(self) -> None:
        for s in self._sessions():
            self._drop(s)
        self.current = self.previous = self.next = None
        if self.initiator is not None:
            self.table.pending.pop(self.initiator.local_index, None)
            self.initiator = None

