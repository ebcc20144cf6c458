"""Which path each peer uses: the node's decisions, applied through ``Peer.set_path``.

Rules it obeys:

* Direct paths beat relayed ones. A peer starts on a ready relayed transport (if
  any) so traffic flows at once; a direct path that a traversal plugin reports
  working (``offer``) takes over, and the peer goes back to a relayed path only
  when that direct path is reported lost (``lost``) or its transport is.
* Among transports of the same kind, ``plugins = [...]`` order is preference:
  ``transports`` is kept in that order and the first ready one is used.
* Roaming (an authenticated packet arriving on another path, see engine.py)
  may move a peer anywhere except from a live direct path onto a relayed one.
* Moving a peer never drops its session: sessions are per peer, not per path,
  so packets in flight on the old path still decrypt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from shoal.path import Path
from shoal.peer import Peer
from shoal.transport import PathKind, Readiness, Transport

log = logging.getLogger(__name__)


class PathControl:
    def __init__(self, peers: dict[bytes, Peer], transports: list[Transport],
                 kick: Callable[[Peer], None] | None = None) -> None:
        self.peers = peers
        #: every transport, in preference order (plugins order, then each plugin's own order)
        self.transports = transports
        self.kick = kick or (lambda p: None)
        #: peers whose direct path was reported lost (until a direct path is offered again)
        self.direct_lost: set[bytes] = set()

    # ------------------------------------------------------------ queries
    def relayed_path(self, key: bytes) -> Path | None:
        """The preferred ready relayed path to a peer, if any."""
        for t in self.transports:
            if t.kind is PathKind.RELAYED and t.readiness is Readiness.READY:
                ep = t.endpoint_for(key)
                if ep is not None:
                    return Path.over(t, ep)
        return None

    def preference(self, t: Transport) -> int:
        for i, x in enumerate(self.transports):
            if x is t:
                return i
        return len(self.transports)

    # ------------------------------------------------------------ policy for roaming
    def may_roam(self, peer: Peer, path: Path) -> bool:
        """Follow the peer anywhere, except from a live direct path to a relayed one."""
        if path.kind is PathKind.DIRECT:
            return True
        cur = peer.path
        if cur is None or cur.kind is PathKind.RELAYED:
            return True
        return peer.public_key in self.direct_lost or peer.current is None

    # ------------------------------------------------------------ events
    def start_peer(self, peer: Peer) -> None:
        """A peer the server just announced: start on a relayed path when one is ready."""
        relayed = self.relayed_path(peer.public_key)
        if relayed is not None:
            peer.set_path(relayed, "start on the relay; direct paths are tried meanwhile")

    def offer(self, key: bytes, path: Path, rtt: float | None, reason: str) -> None:
        """A plugin found a working path (a direct one: it takes over)."""
        peer = self.peers.get(key)
        if peer is None:
            return
        if path.kind is PathKind.DIRECT:
            self.direct_lost.discard(key)
        cur = peer.path
        if cur is not None and cur.kind is PathKind.DIRECT and path.kind is PathKind.RELAYED \
                and key not in self.direct_lost:
            return
        peer.set_path(path, reason)
        self.kick(peer)

    def lost(self, key: bytes, path: Path, reason: str) -> None:
        """A plugin reports a path dead: fall back to a relayed path."""
        peer = self.peers.get(key)
        if peer is None:
            return
        if path.kind is PathKind.DIRECT:
            self.direct_lost.add(key)
        if peer.path is not None and peer.path != path and peer.path.kind is PathKind.DIRECT \
                and path.kind is PathKind.DIRECT:
            return  # the peer already moved to another direct path
        relayed = self.relayed_path(key)
        if relayed is not None and relayed != path:
            peer.set_path(relayed, reason + "; falling back to " + relayed.transport.name)
            self.kick(peer)
        else:
            log.info("peer %s: path %s lost (%s), no other path", peer.name, path, reason)

    def readiness(self, t: Transport, old: Readiness, new: Readiness, reason: str,
                  wanted: Iterable[bytes]) -> None:
        """A transport became ready or was lost; ``wanted``: peers the server asked for."""
        log.info("transport %s: %s -> %s (%s)", t.name, old.value, new.value, reason)
        if new is Readiness.READY and t.kind is PathKind.RELAYED:
            for key in wanted:
                p = self.peers.get(key)
                if p is None:
                    continue
                if p.current is None or key in self.direct_lost or p.path is None:
                    ep = t.endpoint_for(key)
                    if ep is not None and self.relayed_path(key) == Path.over(t, ep):
                        p.set_path(Path.over(t, ep), f"{t.name} ready")
                        self.kick(p)
        elif new in (Readiness.LOST, Readiness.CLOSED):
            for p in list(self.peers.values()):
                if p.path is not None and p.path.transport is t:
                    other = self.relayed_path(p.public_key)
                    if other is not None:
                        p.set_path(other, f"{t.name} {new.value}")
                        self.kick(p)
