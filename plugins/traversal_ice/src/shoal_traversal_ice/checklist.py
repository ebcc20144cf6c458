"""ICE-style check list for one peer (RFC 8445 ideas, simplified), sans-IO.

Rules it obeys:

* A pair is (local socket, remote candidate). Most pairs use the node's one
  UDP socket; birthday punching adds pairs on extra sockets.
* Pair priority follows the remote candidate's type preference (host 126 >
  peer-reflexive 110 > server-reflexive 100 > relayed 0), RFC 8445 §5.1.2.2.
  A relayed candidate is a peer's address on a TURN server: reached with
  plain UDP, but through a third machine, so any other working pair wins.
* Checks are paced: at most one new check every ``PACE`` seconds per list;
  a check in progress is retransmitted every ``RTO`` up to ``MAX_TRIES``.
* A pong makes its pair SUCCEEDED (with an RTT); an authenticated ping from an
  unknown address teaches a peer-reflexive candidate and triggers a check.
* The selected pair is the best SUCCEEDED one by (priority, -rtt); checks
  continue in the background (``KEEPALIVE``) on the selected and failed
  pairs, so a dead path is noticed within ``DEAD_AFTER`` and a better one is
  found when it appears. A keepalive unanswered after ``MISSED`` (or 1.5 RTT)
  is followed by another check, and so on until one is answered or the pair
  is dead: on a lossy link some of the many checks get through, so loss alone
  seldom kills a pair.

States and transitions (each logged at debug level)::

    WAITING --check sent--> IN_PROGRESS --pong--> SUCCEEDED
    IN_PROGRESS --MAX_TRIES without pong--> FAILED --retry (slow)--> IN_PROGRESS
    SUCCEEDED --no pong for DEAD_AFTER--> FAILED
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from shoal_traversal_ice.probe import new_txid

log = logging.getLogger(__name__)

PACE = 0.02
RTO = 0.15
MAX_TRIES = 8
KEEPALIVE = 0.5
FAILED_RETRY = 3.0
DEAD_AFTER = 1.5  # three keepalive probes unanswered in a row
MISSED = 0.1      # a keepalive unanswered after this long (or 1.5 RTT) is checked again

Addr = tuple[str, int]


class CandidateType(IntEnum):
    HOST = 126
    PRFLX = 110
    SRFLX = 100
    RELAY = 0


class PairState(Enum):
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(eq=False)
class Pair:
    remote: Addr
    via: Any                      # the local transport (socket) the check goes out on
    type: CandidateType
    state: PairState = PairState.WAITING
    tries: int = 0
    sent_at: float = 0.0
    next_at: float = 0.0
    rtt: float | None = None
    last_pong: float = -1e18
    txids: set[bytes] = field(default_factory=set)

    @property
    def priority(self) -> int:
        return int(self.type)

    def set_state(self, s: PairState, peer: str) -> None:
        if s is not self.state:
            log.debug("pair %s %s -> %s: %s -> %s", peer, getattr(self.via, "name", "?"),
                      self.remote, self.state.value, s.value)
            self.state = s


class CheckList:
    def __init__(self, peer_name: str, main: Any) -> None:
        self.peer_name = peer_name
        self.main = main
        self.pairs: list[Pair] = []
        self.by_txid: dict[bytes, Pair] = {}
        self.selected: Pair | None = None
        self._next_check = 0.0

    # ------------------------------------------------------------ candidates
    def find(self, remote: Addr, via: Any) -> Pair | None:
        for p in self.pairs:
            if p.remote == remote and p.via is via:
                return p
        return None

    def add(self, remote: Addr, type: CandidateType, via: Any = None) -> Pair:
        via = via or self.main
        p = self.find(remote, via)
        if p is None:
            p = Pair(remote, via, type)
            self.pairs.append(p)
            self.pairs.sort(key=lambda x: -x.priority)
        elif type > p.type:
            p.type = type
        return p

    def set_remote_candidates(self, cands: list[tuple[Addr, CandidateType]]) -> None:
        """New candidates from the server; keep state of pairs that are still listed."""
        for addr, t in cands:
            p = self.add(addr, t)
            if p.state is PairState.FAILED:  # fresh information: try again soon
                p.set_state(PairState.WAITING, self.peer_name)
                p.tries = 0

    # ------------------------------------------------------------ checks
    def due(self, now: float) -> list[tuple[Pair, bytes]]:
        """Checks to send now: (pair, txid). Paced; retransmissions and keepalives included."""
        out: list[tuple[Pair, bytes]] = []
        started = False
        for p in self.pairs:
            if p.state is PairState.IN_PROGRESS and now >= p.next_at:
                if p.tries >= MAX_TRIES:
                    p.set_state(PairState.FAILED, self.peer_name)
                    p.next_at = now + FAILED_RETRY
                    continue
                out.append((p, self._send(p, now, RTO)))
            elif p.state is PairState.SUCCEEDED and now >= p.next_at:
                if now - p.last_pong > DEAD_AFTER:
                    p.set_state(PairState.FAILED, self.peer_name)
                    p.next_at = now + FAILED_RETRY
                    if self.selected is p:
                        self.selected = None
                    continue
                quick = max(MISSED, 1.5 * (p.rtt or 0.0))
                if p.last_pong >= p.sent_at and now < p.sent_at + KEEPALIVE:
                    p.next_at = p.sent_at + KEEPALIVE   # answered: the next keepalive
                    continue
                # a keepalive, or a quick check while the last one is unanswered
                out.append((p, self._send(p, now, quick)))
            elif p.state is PairState.WAITING and not started and now >= self._next_check:
                p.set_state(PairState.IN_PROGRESS, self.peer_name)
                p.tries = 0
                started = True
                self._next_check = now + PACE
                out.append((p, self._send(p, now, RTO)))
            elif p.state is PairState.FAILED and now >= p.next_at:
                p.set_state(PairState.IN_PROGRESS, self.peer_name)
                p.tries = MAX_TRIES - 3  # a short burst, not a full round
                out.append((p, self._send(p, now, RTO)))
        return out

    def _send(self, p: Pair, now: float, interval: float) -> bytes:
        txid = new_txid()
        if len(p.txids) > 16:
            for old in list(p.txids)[:8]:
                p.txids.discard(old)
                self.by_txid.pop(old, None)
        p.txids.add(txid)
        self.by_txid[txid] = p
        p.tries += 1
        p.sent_at = now
        p.next_at = now + interval
        return txid

    def triggered(self, remote: Addr, via: Any, now: float) -> tuple[Pair, bytes] | None:
        """An authenticated ping arrived from ``remote`` on ``via``: check that pair now."""
        p = self.find(remote, via)
        if p is None:
            p = self.add(remote, CandidateType.PRFLX, via)
        if p.state is PairState.SUCCEEDED and now - p.last_pong < KEEPALIVE:
            return None
        if p.state is not PairState.SUCCEEDED:
            p.set_state(PairState.IN_PROGRESS, self.peer_name)
            p.tries = 0
        return p, self._send(p, now, RTO)

    def on_pong(self, txid: bytes, now: float) -> Pair | None:
        p = self.by_txid.pop(txid, None)
        if p is None:
            return None
        p.txids.discard(txid)
        rtt = now - p.sent_at if p.sent_at else 0.0
        p.rtt = rtt if p.rtt is None else 0.8 * p.rtt + 0.2 * rtt
        p.last_pong = now
        if p.state is not PairState.SUCCEEDED:
            p.set_state(PairState.SUCCEEDED, self.peer_name)
            p.next_at = now + KEEPALIVE
        return p

    # ------------------------------------------------------------ selection
    def best(self) -> Pair | None:
        ok = [p for p in self.pairs if p.state is PairState.SUCCEEDED]
        if not ok:
            return None
        return max(ok, key=lambda p: (p.priority, -(p.rtt or 0.0)))

    def select(self) -> Pair | None:
        """Re-evaluate the selected pair; returns it if it changed."""
        b = self.best()
        if b is not self.selected:
            self.selected = b
            return b
        return None

    def drop_via(self, via: Any) -> None:
        self.pairs = [p for p in self.pairs if p.via is not via]
        for t, p in list(self.by_txid.items()):
            if p.via is via:
                del self.by_txid[t]
