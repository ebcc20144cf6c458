"""Every path the node knows to one peer, with measured figures (sans-IO).

Rules it obeys:

* An entry is one ``Path``. It comes from the peer's announced candidates, from
  a ready relayed transport (``endpoint_for``), from a plugin (``offer``), or
  from an authenticated packet that arrived on it (``learn``). At most
  ``MAX_PATHS`` entries per peer; the oldest unusable one makes room.
* The core probes entries itself (``due`` -> ping, ``on_pong``) unless a plugin
  reports them (``reported``: a traversal plugin runs its own checks and calls
  offer/lost; such an entry stays usable until the plugin reports it lost, or
  until the core takes it back with ``verify`` because the peer went quiet).
  Usable paths are probed every ``PROBE_INTERVAL``, and again every
  ``MISSED_INTERVAL`` (or 1.5 RTT) while the last probe is unanswered, so a
  lossy path is not taken for a dead one; paths that never answered, or
  stopped, every ``RETRY_INTERVAL``.
* States (``PathState``), each transition logged at debug level::

      UNTRIED --pong / authenticated packet / offer--> USABLE
      USABLE --no pong for DEAD_AFTER / lost / transport lost--> LOST
      LOST --pong / authenticated packet / offer--> USABLE

* RTT is smoothed (EWMA, 1/4 new); loss is the share of the last ``WINDOW``
  probes that went unanswered within ``PROBE_TIMEOUT``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from shoal.path import Path, PathState
from shoal.path_choice import PathFigures

log = logging.getLogger(__name__)

MAX_PATHS = 24
PROBE_INTERVAL = 0.5
MISSED_INTERVAL = 0.1
RETRY_INTERVAL = 2.0
PROBE_TIMEOUT = 1.0
DEAD_AFTER = 1.5  # three keepalive probes unanswered in a row
WINDOW = 16
MAX_OUTSTANDING = 8


@dataclass(eq=False)
class PathEntry:
    path: Path
    added: float
    state: PathState = PathState.UNTRIED
    reported: bool = False
    rtt: float | None = None
    last_ok: float = -1e18
    last_sent: float = -1e18
    next_probe: float = 0.0
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    outstanding: dict[bytes, float] = field(default_factory=dict)   # txid -> sent at

    @property
    def loss(self) -> float:
        if not self.outcomes:
            return 0.0
        return self.outcomes.count(False) / len(self.outcomes)

    def set_state(self, new: PathState, peer: str, why: str) -> None:
        if new is not self.state:
            log.debug("peer %s: path %s %s -> %s (%s)", peer, self.path, self.state.value,
                      new.value, why)
            self.state = new

    def ok(self, now: float, rtt: float | None, peer: str, why: str) -> None:
        if rtt is not None:
            self.rtt = rtt if self.rtt is None else 0.75 * self.rtt + 0.25 * rtt
        self.last_ok = now
        self.next_probe = min(self.next_probe, now + PROBE_INTERVAL)
        self.set_state(PathState.USABLE, peer, why)


class PeerPaths:
    """The path table of one peer."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.entries: dict[Path, PathEntry] = {}
        self.by_txid: dict[bytes, PathEntry] = {}

    def entry(self, path: Path, now: float) -> PathEntry:
        e = self.entries.get(path)
        if e is None:
            if len(self.entries) >= MAX_PATHS:
                self._evict()
            e = self.entries[path] = PathEntry(path, now)
        return e

    def _evict(self) -> None:
        victims = sorted((e for e in self.entries.values() if e.state is not PathState.USABLE),
                         key=lambda e: e.added) or sorted(self.entries.values(),
                                                          key=lambda e: e.last_ok)
        self.remove(victims[0].path)

    def remove(self, path: Path) -> None:
        e = self.entries.pop(path, None)
        if e is not None:
            for t in e.outstanding:
                self.by_txid.pop(t, None)

    # ------------------------------------------------------------ what is known
    def learn(self, path: Path, now: float) -> None:
        """An authenticated packet from the peer arrived on ``path``."""
        self.entry(path, now).ok(now, None, self.peer, "authenticated packet")

    def offer(self, path: Path, rtt: float | None, now: float, why: str) -> None:
        e = self.entry(path, now)
        e.path = path          # the reporting plugin knows the kind (e.g. a TURN relay address)
        e.reported = True
        e.ok(now, rtt, self.peer, why)

    def lost(self, path: Path, why: str) -> None:
        e = self.entries.get(path)
        if e is not None:
            e.set_state(PathState.LOST, self.peer, why)

    def verify(self, e: PathEntry, now: float, why: str) -> None:
        """Probe a plugin-reported entry ourselves from now on: it stays usable only if it
        answers within ``DEAD_AFTER`` (a plugin's new report hands it back)."""
        log.debug("peer %s: path %s: %s; probing it", self.peer, e.path, why)
        e.reported = False
        e.last_ok = now
        e.next_probe = now

    def figures(self, preference: dict[int, int]) -> list[PathFigures]:
        return [PathFigures(e.path, e.state, preference.get(id(e.path.transport), 99),
                            e.rtt, e.loss) for e in self.entries.values()]

    # ------------------------------------------------------------ probing
    def due(self, now: float, txid: bytes | None = None) -> list[tuple[PathEntry, bytes]]:
        """Probes to send now. ``txid`` (tests) fixes the id; otherwise a fresh one each."""
        from shoal.path_probe import new_txid

        out = []
        for e in self.entries.values():
            for t, sent in list(e.outstanding.items()):
                if now - sent > PROBE_TIMEOUT:
                    del e.outstanding[t]
                    self.by_txid.pop(t, None)
                    e.outcomes.append(False)
            if e.state is PathState.USABLE and not e.reported and now - e.last_ok > DEAD_AFTER:
                e.set_state(PathState.LOST, self.peer, f"no answer for {DEAD_AFTER:g} s")
            if e.reported or now < e.next_probe or len(e.outstanding) >= MAX_OUTSTANDING:
                continue
            if e.state is PathState.USABLE and e.last_ok >= e.last_sent \
                    and now < e.last_sent + PROBE_INTERVAL:
                e.next_probe = e.last_sent + PROBE_INTERVAL   # answered: the next round
                continue
            t = txid or new_txid()
            e.outstanding[t] = now
            self.by_txid[t] = e
            e.last_sent = now
            e.next_probe = now + (max(MISSED_INTERVAL, 1.5 * (e.rtt or 0.0))
                                  if e.state is PathState.USABLE else RETRY_INTERVAL)
            out.append((e, t))
        return out

    def on_pong(self, txid: bytes, now: float) -> PathEntry | None:
        e = self.by_txid.pop(txid, None)
        if e is None:
            return None
        sent = e.outstanding.pop(txid, None)
        if sent is None:
            return None
        e.outcomes.append(True)
        e.ok(now, now - sent, self.peer, "probe answered")
        return e
