"""Which path each peer uses: the path tables, the core's probes, and ``Peer.set_path``.

Rules it obeys:

* Every peer has a path table (``path_table.PeerPaths``): its announced
  candidates on every transport, a path over each ready relayed transport, paths
  plugins report (``offer``/``lost``) and paths authenticated packets arrived on.
* The core probes every path no plugin reports on (``path_probe``: RTT and loss);
  a traversal plugin (ICE) reports its own pairs.
* The peer's path is ``path_choice.choose`` over its table, re-evaluated on
  every report, every probe round (``tick``) and every roaming packet: direct
  over relayed, then ``plugins = [...]`` order, then measured quality, with
  hysteresis. Each change goes through ``Peer.set_path`` with its reason.
* A peer the server announces starts on a ready relayed path at once (traffic
  flows while direct paths are tried); a peer whose path is lost with nothing
  usable left keeps it (it may come back; probes go on).
* Roaming: an authenticated packet on another endpoint of the same direct
  transport moves the peer there (NAT rebinding, WireGuard-style); on another
  transport, only if path choice prefers it.
* A plugin's report is trusted until the peer goes quiet: when the node has
  been sending on a reported path for ``VERIFY_AFTER`` seconds without hearing
  back, the core probes that path itself (a plugin that failed to report it
  lost cannot keep a peer on a dead endpoint); if it answers, nothing changes.
* Moving a peer never drops its session: sessions are per peer, not per path,
  so packets in flight on the old path still decrypt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from shoal import path_probe as pp
from shoal.path import Path
from shoal.path_choice import choose
from shoal.path_choice import reason as why
from shoal.path_table import PeerPaths
from shoal.peer import Peer
from shoal.transport import Endpoint, PathKind, Readiness, Transport

log = logging.getLogger(__name__)

#: A roaming packet refused by path choice is not re-examined for this long (seconds).
ROAM_RECHECK = 0.25
#: Sending this long on a plugin-reported path without hearing back: probe it ourselves.
VERIFY_AFTER = 3.0


class PathControl:
    def __init__(self, peers: dict[bytes, Peer], transports: list[Transport],
                 kick: Callable[[Peer], None] | None = None,
                 clock: Callable[[], float] | None = None,
                 keypair: Any = None) -> None:
        self.peers = peers
        #: every transport, in preference order (plugins order, then each plugin's own order)
        self.transports = transports
        self.kick = kick or (lambda p: None)
        self.clock = clock or (lambda: 0.0)
        self.keypair = keypair
        self.tables: dict[bytes, PeerPaths] = {}
        self._aead: dict[bytes, Any] = {}
        self._refused: dict[bytes, tuple[Path, float]] = {}   # peer -> (path, until)
        self.probe_errors = 0

    # ------------------------------------------------------------ queries
    def preference(self) -> dict[int, int]:
        return {id(t): i for i, t in enumerate(self.transports)}

    def relayed_path(self, key: bytes) -> Path | None:
        """The preferred ready relayed path to a peer, if any."""
        for t in self.transports:
            if t.kind is PathKind.RELAYED and t.readiness is Readiness.READY:
                ep = t.endpoint_for(key)
                if ep is not None:
                    return Path.over(t, ep)
        return None

    def table(self, peer: Peer) -> PeerPaths:
        tab = self.tables.get(peer.public_key)
        if tab is None:
            tab = self.tables[peer.public_key] = PeerPaths(peer.name)
        return tab

    def _choose(self, peer: Peer, reason: str) -> None:
        """Re-evaluate the peer's path; move it (and handshake at once) if choice says so."""
        tab = self.table(peer)
        figures = tab.figures(self.preference())
        new = choose(peer.path, figures)
        if new is not None and new != peer.path:
            cur = next((f for f in figures if f.path == peer.path), None)
            nf = next(f for f in figures if f.path == new)
            peer.set_path(new, f"{reason}: {why(nf, cur)}")
            self.kick(peer)

    # ------------------------------------------------------------ peers
    def start_peer(self, peer: Peer) -> None:
        """A peer the server just announced: start on a relayed path when one is ready."""
        self.update_peer(peer)
        relayed = self.relayed_path(peer.public_key)
        if relayed is not None and (peer.path is None or not peer.tunnel_up):
            peer.set_path(relayed, "start on the relay; direct paths are tried meanwhile")

    def update_peer(self, peer: Peer) -> None:
        """The peer's announced candidates (``peer.candidates``) may have changed."""
        now = self.clock()
        tab = self.table(peer)
        for c in peer.candidates:
            tab.entry(c, now)
        relayed = self.relayed_path(peer.public_key)
        if relayed is not None:
            tab.entry(relayed, now)

    def forget(self, key: bytes) -> None:
        self.tables.pop(key, None)
        self._aead.pop(key, None)
        self._refused.pop(key, None)

    # ------------------------------------------------------------ reports from plugins
    def offer(self, key: bytes, path: Path, rtt: float | None, reason: str) -> None:
        peer = self.peers.get(key)
        if peer is None:
            return
        self.table(peer).offer(path, rtt, self.clock(), reason)
        self._choose(peer, reason)

    def lost(self, key: bytes, path: Path, reason: str) -> None:
        peer = self.peers.get(key)
        if peer is None:
            return
        self.table(peer).lost(path, reason)
        self._choose(peer, reason)

    def readiness(self, t: Transport, old: Readiness, new: Readiness, reason: str,
                  wanted: Iterable[bytes]) -> None:
        """A transport became ready or was lost; ``wanted``: peers the server asked for."""
        log.info("transport %s: %s -> %s (%s)", t.name, old.value, new.value, reason)
        now = self.clock()
        if new is Readiness.READY and t.kind is PathKind.RELAYED:
            wanted = set(wanted)
            for key, p in list(self.peers.items()):
                ep = t.endpoint_for(key)
                if ep is None:
                    continue
                path = Path.over(t, ep)
                self.table(p).entry(path, now)
                if key in wanted and (p.path is None or not p.tunnel_up):
                    p.set_path(path, f"{t.name} ready")
                    self.kick(p)
        elif new in (Readiness.LOST, Readiness.CLOSED):
            for p in list(self.peers.values()):
                tab = self.tables.get(p.public_key)
                if tab is None:
                    continue
                for path in list(tab.entries):
                    if path.transport is t:
                        tab.lost(path, f"{t.name} {new.value}")
                self._choose(p, f"{t.name} {new.value}")

    # ------------------------------------------------------------ roaming (engine policy)
    def may_roam(self, peer: Peer, path: Path) -> bool:
        """An authenticated packet from the peer arrived on ``path``: move there?

        Called per packet while the peer sends on another path than ours, so a
        refusal is remembered for ``ROAM_RECHECK`` seconds.
        """
        now = self.clock()
        refused = self._refused.get(peer.public_key)
        if refused is not None and refused[0] == path and now < refused[1]:
            return False
        self.table(peer).learn(path, now)
        cur = peer.path
        if cur is None:
            return True
        if path.kind is PathKind.DIRECT and path.transport is cur.transport:
            return True  # the peer's address changed (NAT rebinding): follow it
        if choose(cur, self.table(peer).figures(self.preference())) == path:
            return True
        self._refused[peer.public_key] = (path, now + ROAM_RECHECK)
        return False

    # ------------------------------------------------------------ probes
    def _pair(self, key: bytes) -> Any:
        aead = self._aead.get(key)
        if aead is None:
            kp = self.keypair
            aead = self._aead[key] = pp.pair_key(kp.private, kp.public, key)
        return aead

    def tick(self) -> None:
        """Send the probes that are due and re-evaluate every peer's path."""
        if self.keypair is None:
            return
        now = self.clock()
        for key, peer in list(self.peers.items()):
            tab = self.table(peer)
            cur = tab.entries.get(peer.path) if peer.path is not None else None
            if cur is not None and cur.reported and peer.unanswered_for(now) > VERIFY_AFTER:
                tab.verify(cur, now, f"nothing heard for {peer.unanswered_for(now):.1f} s")
            for entry, txid in tab.due(now):
                path = entry.path
                if path.transport.readiness is not Readiness.READY:
                    continue
                pkt = pp.seal(self._pair(key), self.keypair.public, pp.PathProbe(pp.PING, txid))
                try:
                    path.transport.send(pkt, path.endpoint)
                except OSError:
                    self.probe_errors += 1
            self._choose(peer, "path probes")

    def on_probe(self, data: bytes, addr: Endpoint, via: Transport) -> bool:
        """A path probe arrived; False when it is malformed or does not authenticate."""
        try:
            key = pp.sender_of(data)
            peer = self.peers.get(key)
            if peer is None or self.keypair is None:
                return False
            probe = pp.open_(self._pair(key), data)
        except pp.BadProbe:
            return False
        if probe.kind == pp.PING:
            pong = pp.seal(self._pair(key), self.keypair.public, pp.PathProbe(pp.PONG, probe.txid))
            try:
                via.send(pong, addr)
            except OSError:
                self.probe_errors += 1
        else:
            self.table(peer).on_pong(probe.txid, self.clock())
        return True

    def status(self, peer: Peer) -> list[dict[str, Any]]:
        """The peer's path table for ``status --json`` (``peers[].paths``)."""
        tab = self.tables.get(peer.public_key)
        if tab is None:
            return []
        from shoal.transport import endpoint_text

        return [{"transport": e.path.transport.name, "endpoint": endpoint_text(e.path.endpoint),
                 "kind": e.path.kind.value, "state": e.state.value,
                 "rtt_ms": None if e.rtt is None else round(e.rtt * 1000, 2),
                 "loss": round(e.loss, 2), "reported": e.reported,
                 "current": e.path == peer.path}
                for e in list(tab.entries.values())[:16]]
