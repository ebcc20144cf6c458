"""Which peers a node should have, from the server's ``peers`` messages (sans-IO).

Rules it obeys:

* A ``peers`` message lists tunnels to build (``up``) and to tear down
  (``down``); ``full`` replaces the whole set (sent after each login).
* Static ``[[peers]]`` of the config and the node itself are never touched by
  the server's lists.
* After a re-login (e.g. the server restarted) peers that have not logged in
  again yet are missing from the full snapshot. One whose tunnel still carries
  traffic gets ``STALE_GRACE`` seconds instead of being cut; one that comes back
  in time keeps its tunnel.
* A peer that goes is remembered as offline (``offline``) for status, with the
  last information the server gave.

``apply`` and ``expire`` return what the node shell must do, in order:
``Up(key, info)`` to create or update a peer, ``Gone(key)`` to remove one.
The clock is passed in; whether a tunnel carries traffic is asked through
``carries_traffic(key)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shoal.control import messages as m
from shoal.identity import decode_public_key

STALE_GRACE = 15.0


@dataclass(frozen=True)
class Up:
    key: bytes
    info: m.PeerInfo


@dataclass(frozen=True)
class Gone:
    key: bytes


Action = Up | Gone


class PeerReconciler:
    def __init__(self, own_key: bytes, static_keys: Iterable[bytes],
                 grace: float = STALE_GRACE) -> None:
        self.own_key = own_key
        self.static_keys = frozenset(static_keys)
        self.grace = grace
        self.server_peers: dict[bytes, m.PeerInfo] = {}   # tunnels the server asked for
        self.offline: dict[bytes, m.PeerInfo] = {}        # known members, now offline
        self.stale: dict[bytes, float] = {}               # missing from a snapshot: deadline

    def apply(self, msg: m.Peers, now: float, carries_traffic: Callable[[bytes], bool]
              ) -> list[Action]:
        out: list[Action] = []
        if msg.full:
            wanted = {decode_public_key(p.public_key) for p in msg.up}
            for key in list(self.server_peers):
                if key in wanted:
                    continue
                if carries_traffic(key):
                    self.stale.setdefault(key, now + self.grace)
                else:
                    out.append(self._gone(key))
        for info in msg.up:
            key = decode_public_key(info.public_key)
            if key in self.static_keys or key == self.own_key:
                continue
            self.server_peers[key] = info
            self.offline.pop(key, None)
            self.stale.pop(key, None)
            out.append(Up(key, info))
        for k in msg.down:
            key = decode_public_key(k)
            if key in self.server_peers or key in self.stale:
                out.append(self._gone(key))
        return out

    def expire(self, now: float) -> list[Action]:
        """Stale peers whose grace ran out."""
        return [self._gone(k) for k, deadline in list(self.stale.items()) if now >= deadline]

    def _gone(self, key: bytes) -> Gone:
        self.stale.pop(key, None)
        info = self.server_peers.pop(key, None)
        if info is not None:
            self.offline[key] = info
        return Gone(key)
