"""The traversal agent: asyncio shell around discovery, check lists and birthday punching.

What it does for the node:

1. After each login, discovers the NAT (``nat_discovery``, STUN) on the node's
   own UDP socket against the coordination server's discovery endpoints and
   the ``stun`` servers of its settings, and reports candidates to the
   server: the server-reflexive one as soon as test I answers (trickle), the
   NAT class when classification is done; test I is repeated every
   ``REFRESH`` seconds so a NAT rebind is noticed and re-announced quickly.
   STUN answers share the socket with tunnel traffic: the engine hands every
   datagram with STUN's magic cookie (``wire.is_stun``) to the handler of
   ``wire.TYPE_STUN``.
2. For every peer the server announces, runs a ``CheckList`` over the peer's
   candidates with authenticated probes; learns peer-reflexive candidates
   from incoming checks; offers the best working pair to the node as the
   peer's path (``NodeHandle.offer_path``); the node moves the peer and starts
   a handshake at once if the tunnel is not up yet.
3. Port-restricted x symmetric: birthday punching (``birthday``), bounded.
4. When the offered pair dies, reports it (``NodeHandle.path_lost``); the
   node's path choice falls back to another path (a relayed one if nothing
   direct works). Checks go on, so a direct path is offered again as soon as
   one answers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from shoal import wire
from shoal.config import parse_endpoint
from shoal.control import messages as m
from shoal.path import Path
from shoal.plugin_api import Drop, NodeHandle, NodePlugin, PeerView
from shoal.stun_client import StunClient
from shoal.transport import Delivery, PathKind, Readiness, Receive, Transport

from shoal_traversal_ice import probe as pr
from shoal_traversal_ice.birthday import Opener, Sprayer
from shoal_traversal_ice.checklist import CandidateType, CheckList, Pair, PairState
from shoal_traversal_ice.nat_discovery import (
    APDM,
    EIM,
    NatResult,
    ServerView,
    StunAsker,
    discover,
    test_one,
)

log = logging.getLogger(__name__)

TICK = 0.01
REFRESH = 2.0


class PunchSocket(Transport):
    """An extra UDP socket (birthday punching); a transport the engine can send on."""

    name = "udp-punch"
    kind = PathKind.DIRECT
    delivery = Delivery.DATAGRAM

    def __init__(self, node: NodeHandle, loop: asyncio.AbstractEventLoop) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        s.setblocking(False)
        self.sock = s
        self.send = s.sendto  # type: ignore[method-assign]
        self._loop = loop
        self._receive = node.receiver(self)
        loop.add_reader(s.fileno(), self._drain)
        self.set_readiness(Readiness.READY, "socket bound")

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        """Punch sockets start themselves (see __init__)."""

    def send(self, data: bytes, endpoint: Any) -> None:
        raise OSError("punch socket closed")

    def _drain(self) -> None:
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            self._receive(data, addr)

    def local_endpoints(self) -> list[str]:
        return []

    def close(self) -> None:
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        self.set_readiness(Readiness.CLOSED, "punching ended")


@dataclass
class PeerTraversal:
    peer: PeerView
    info: m.PeerInfo
    checks: CheckList
    aead: Any
    sprayer: Sprayer | None = None
    opener: Opener | None = None
    punch: list[PunchSocket] = field(default_factory=list)
    birthday_txids: dict[bytes, tuple[tuple[str, int], Any]] = field(default_factory=dict)
    connected_at: float | None = None
    offered: Path | None = None   # the pair last offered to the node as a working path
    #: every path offered to the node and not reported lost since: the node relies on
    #: this agent to say when one dies (it does not probe them itself)
    vouched: set[Path] = field(default_factory=set)


class Agent(NodePlugin):
    def __init__(self, node: NodeHandle, settings: Any) -> None:
        self.settings = settings
        self.node = node
        self.peers: dict[bytes, PeerTraversal] = {}
        self.nat = NatResult(udp=True)
        self.stun = StunClient(self._send_main)
        self.ask = StunAsker(self.stun)
        self.stun_servers: list[tuple[str, str]] = []   # (host:port, origin)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._classified = False

    # ------------------------------------------------------------ wiring
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.node.register_datagram_handler(pr.TYPE_PROBE, self._on_probe)
        self.node.register_datagram_handler(wire.TYPE_STUN, self._on_stun)
        self._tasks.append(self._loop.create_task(self._run()))

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for pt in self.peers.values():
            for s in pt.punch:
                s.close()

    @property
    def main(self) -> Transport:
        return self.node.main_transport

    def _send_main(self, data: bytes, addr: tuple[str, int]) -> None:
        self.main.send(data, addr)

    # ------------------------------------------------------------ discovery
    def on_login(self, welcome: m.Welcome) -> None:
        servers = [(e, "coordination server") for e in welcome.discovery[:1]
                   if self.settings.use_server_stun]
        servers += [(e, "config") for e in self.settings.stun]
        self.stun_servers = servers
        assert self._loop is not None
        self._tasks.append(self._loop.create_task(self._discover()))

    def _on_stun(self, data: bytes, addr: Any, via: Any) -> None:
        if not self.stun.on_datagram(data, addr):
            self.node.count_drop(Drop.MALFORMED)

    async def _resolve(self) -> list[tuple[tuple[str, int], ServerView]]:
        """Each configured server as an address (names resolved now) and a fresh view."""
        assert self._loop is not None
        out = []
        for text, origin in self.stun_servers:
            view = ServerView(server=text, origin=origin)
            host, _, port = text.rpartition(":")
            try:
                infos = await self._loop.getaddrinfo(host.strip("[]"), int(port),
                                                     family=socket.AF_INET,
                                                     type=socket.SOCK_DGRAM)
                view.address = (infos[0][4][0], infos[0][4][1])
                out.append((view.address, view))
            except (OSError, ValueError, IndexError):
                view.error = f"cannot resolve {host}"
                out.append((("0.0.0.0", 0), view))
        return [(a, v) for a, v in out if a[1]] + [(a, v) for a, v in out if not a[1]]

    async def _classify(self, on_public: Any = None) -> NatResult:
        servers = await self._resolve()
        reachable = [(a, v) for a, v in servers if a[1]]
        local_ips = self.node.host_addresses()
        result = await discover(self.ask, reachable, local_ips, on_public)
        result.servers = [v for _, v in servers]
        return result

    async def _discover(self) -> None:
        if not self.stun_servers:
            return

        def on_public(addr: tuple[str, int]) -> None:
            self.nat.public = addr
            self._report()

        result = await self._classify(on_public)
        self.nat = result
        self._classified = True
        log.info("nat: mapping %s, filtering %s, public %s (stun %s)%s", result.mapping,
                 result.filtering, result.public, result.server or "-",
                 "" if result.udp else " (UDP blocked)")
        for v in result.servers:
            if v.error:
                log.warning("stun %s: %s", v.server, v.error)
        self._report()
        for pt in self.peers.values():
            self._plan_birthday(pt)
        while True:  # notice rebinds: the public endpoint moves
            await asyncio.sleep(REFRESH)
            target = self._refresh_target()
            if target is None:
                continue
            a = await self.ask(target, 0)
            public = a.mapped if a is not None else None
            if public is not None and public != self.nat.public:
                log.info("nat: public endpoint moved %s -> %s", self.nat.public, public)
                self.nat.public = public
                self.nat.udp = True
                self._report()
                for pt in self.peers.values():
                    for p in pt.checks.pairs:
                        p.next_at = 0.0
                    self._replan(pt)

    def _refresh_target(self) -> tuple[str, int] | None:
        """The server whose test I tracks the public endpoint (the one that classified)."""
        for v in self.nat.servers:
            if v.reachable and (v.server == self.nat.server or self.nat.server is None):
                return v.address
        return None

    async def netcheck(self) -> dict[str, Any]:
        """Fresh test I against every server; a full classification only if none stands.

        Re-running the filtering tests on a socket that already talked to the
        servers' other addresses would find those filters open, so a standing
        classification is kept and only reachability, RTT and public endpoints
        are measured again.
        """
        if not self.stun_servers:
            return self.nat.as_dict()
        if not self.nat.complete:
            self.nat = await self._classify()
            self._classified = True
            return self.nat.as_dict()
        servers = await self._resolve()
        for addr, view in servers:
            if addr[1]:
                await test_one(self.ask, addr, view)
            old = next((v for v in self.nat.servers if v.server == view.server), None)
            if old is not None:
                view.mapping, view.filtering = old.mapping, old.filtering
        self.nat.servers = [v for _, v in servers]
        return self.nat.as_dict()

    def _local_candidates(self) -> list[str]:
        port = self.main.local_endpoints()[0].rpartition(":")[2]
        return [f"{ip}:{port}" for ip in self.node.host_addresses()]

    def _report(self) -> None:
        if not self.node.online:
            return
        endpoints = self._local_candidates()
        if self.nat.public and self.nat.mapping != APDM:
            endpoints.insert(0, f"{self.nat.public[0]}:{self.nat.public[1]}")
        nat = m.NatInfo(mapping=self.nat.mapping, filtering=self.nat.filtering,
                        public_endpoint=(f"{self.nat.public[0]}:{self.nat.public[1]}"
                                         if self.nat.public else None), udp=self.nat.udp)
        self.node.announce(endpoints, nat)

    # ------------------------------------------------------------ peers
    def on_peer(self, peer: PeerView, info: m.PeerInfo) -> None:
        pt = self.peers.get(peer.public_key)
        moved = pt is not None and pt.info.nat.public_endpoint != info.nat.public_endpoint
        if pt is None:
            kp = self.node.keypair
            pt = PeerTraversal(peer, info, CheckList(peer.name, self.main),
                               pr.pair_key(kp.private, peer.public_key, kp.public))
            self.peers[peer.public_key] = pt
        pt.peer, pt.info = peer, info
        cands = []
        for e in info.endpoints:
            name, sep, text = e.partition("=")
            if sep and not (name == "turn" and self._plain_udp_to_relays):
                continue  # another transport's candidate: that transport's business
            try:
                addr = parse_endpoint(text if sep else e)
            except ValueError:
                continue
            t = CandidateType.RELAY if sep else \
                CandidateType.SRFLX if e == info.nat.public_endpoint else CandidateType.HOST
            cands.append((addr, t))
        pt.checks.set_remote_candidates(cands)
        if moved:
            self._replan(pt)
        else:
            self._plan_birthday(pt)

    def _replan(self, pt: PeerTraversal) -> None:
        """A NAT moved (rebind): punch again if no direct pair works any more."""
        if pt.checks.best() is not None:
            return
        self._end_birthday(pt, keep=None)
        pt.opener = pt.sprayer = None
        self._plan_birthday(pt)

    def on_peer_gone(self, key: bytes) -> None:
        pt = self.peers.pop(key, None)
        if pt is not None:
            for s in pt.punch:
                s.close()

    def _plan_birthday(self, pt: PeerTraversal) -> None:
        theirs, mine = pt.info.nat, self.nat
        if not self._classified or not theirs.udp or not mine.udp or pt.checks.best():
            return
        if not self.settings.birthday_ports:
            return
        if mine.mapping == APDM and theirs.mapping == EIM and theirs.filtering == APDM \
                and theirs.public_endpoint and pt.opener is None:
            assert self._loop is not None
            n = self.settings.birthday_ports
            pt.punch = [PunchSocket(self.node, self._loop) for _ in range(n)]
            pt.opener = Opener(sockets=n)
            log.info("peer %s: symmetric x port-restricted: opening %d ports", pt.peer.name, n)
        elif theirs.mapping == APDM and mine.mapping == EIM and mine.filtering == APDM \
                and theirs.public_endpoint and pt.sprayer is None:
            ip = parse_endpoint(theirs.public_endpoint)[0]
            pt.sprayer = Sprayer(ip, budget=self.settings.birthday_probes)
            log.info("peer %s: port-restricted x symmetric: probing ports of %s",
                     pt.peer.name, ip)

    # ------------------------------------------------------------ probes
    def _ping(self, pt: PeerTraversal, via: Any, addr: tuple[str, int], txid: bytes) -> None:
        pkt = pr.seal(pt.aead, self.node.keypair.public, pr.Probe(pr.PING, txid, 0, addr))
        try:
            via.send(pkt, addr)
        except OSError:
            pass

    def _on_probe(self, data: bytes, addr: Any, via: Any) -> None:
        try:
            pt = self.peers.get(pr.sender_of(data))
            if pt is None:
                raise pr.BadProbe("probe from an unknown node")
            probe = pr.open_(pt.aead, data)
        except pr.BadProbe:
            self.node.count_drop(Drop.MALFORMED)
            return
        now = self.node.clock()
        if probe.kind == pr.PING:
            pong = pr.seal(pt.aead, self.node.keypair.public,
                           pr.Probe(pr.PONG, probe.txid, 0, addr))
            try:
                via.send(pong, addr)
            except OSError:
                pass
            trig = pt.checks.triggered(addr, via, now)
            if trig is not None:
                self._ping(pt, trig[0].via, trig[0].remote, trig[1])
            return
        pair = pt.checks.on_pong(probe.txid, now)
        if pair is None:
            hit = pt.birthday_txids.pop(probe.txid, None)
            if hit is None:
                return
            pair = pt.checks.add(hit[0], CandidateType.PRFLX, hit[1])
            pt.checks.by_txid[probe.txid] = pair
            pair.sent_at = 0.0
            pt.checks.on_pong(probe.txid, now)
            log.info("peer %s: birthday punch hit %s via %s", pt.peer.name, hit[0],
                     hit[1].name)
            self._end_birthday(pt, keep=hit[1])
        self._select(pt)

    def _end_birthday(self, pt: PeerTraversal, keep: Any) -> None:
        if pt.sprayer is not None:
            pt.sprayer.stopped = True
        if pt.opener is not None:
            pt.opener.stopped = True
        for s in pt.punch:
            if s is not keep:
                pt.checks.drop_via(s)
                s.close()
        pt.punch = [s for s in pt.punch if s is keep]

    # ------------------------------------------------------------ path selection
    def _select(self, pt: PeerTraversal) -> None:
        """Report the selected pair to the node (it decides the path), and every pair
        offered before that stopped answering as lost (the node may still be using an
        earlier offer: it keeps its path until a new one is clearly better)."""
        pt.checks.select()
        best = pt.checks.selected
        offered = pt.offered
        for old in [v for v in pt.vouched if v != offered and not self._answers(pt, v)]:
            pt.vouched.discard(old)
            self.node.path_lost(pt.peer.public_key, old, "check failed")
        if best is not None:
            path = Path(best.via, best.remote, PathKind.RELAYED) \
                if best.type is CandidateType.RELAY else Path.over(best.via, best.remote)
            if path != offered:
                if offered is not None and not self._answers(pt, offered):
                    pt.vouched.discard(offered)
                    self.node.path_lost(pt.peer.public_key, offered, "check failed")
                self._use(pt, best, path)
        elif offered is not None:
            pt.offered = None
            pt.vouched.discard(offered)
            self._replan(pt)
            self.node.path_lost(pt.peer.public_key, offered, "direct checks stopped answering")

    @staticmethod
    def _answers(pt: PeerTraversal, path: Path) -> bool:
        pair = pt.checks.find(path.endpoint, path.transport)
        return pair is not None and pair.state is PairState.SUCCEEDED

    @property
    def _plain_udp_to_relays(self) -> bool:
        """Check peers' TURN relayed candidates (``turn=IP:PORT``) with plain UDP from the
        main socket: only without a ``turn`` transport of our own, which reaches them
        relay to relay instead (RFC 8445 relayed candidates, lowest priority)."""
        return "turn" not in self.node.config.plugins

    def _use(self, pt: PeerTraversal, pair: Pair, path: Path) -> None:
        peer = pt.peer
        log.info("peer %s: %s path %s via %s works (rtt %.1f ms)", peer.name, path.kind.value,
                 pair.remote, pair.via.name, (pair.rtt or 0) * 1000)
        pt.offered = path
        pt.vouched.add(path)
        if pt.connected_at is None:
            pt.connected_at = self.node.clock()
        self.node.offer_path(peer.public_key, path, pair.rtt, "connectivity check answered")

    # ------------------------------------------------------------ status
    def status(self, status: dict[str, Any]) -> None:
        from shoal.identity import decode_public_key

        status["node"]["nat"] = self.nat.as_dict()
        for p in status["peers"]:
            pt = self.peers.get(decode_public_key(p["public_key"]))
            if pt is None:
                continue
            sel = pt.checks.selected
            p["candidates"] = [{"address": f"{x.remote[0]}:{x.remote[1]}",
                                "type": x.type.name.lower(), "state": x.state.value,
                                "rtt_ms": None if x.rtt is None else round(x.rtt * 1000, 2)}
                               for x in pt.checks.pairs[:16]]
            if sel is not None and p.get("path") == "direct":
                p["rtt_ms"] = round((sel.rtt or 0) * 1000, 2)
            if pt.connected_at is not None:
                p["direct_since_s"] = round(self.node.clock() - pt.connected_at, 1)

    # ------------------------------------------------------------ timers
    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self._tick()
            except Exception:
                log.exception("traversal tick failed")

    def _tick(self) -> None:
        now = self.node.clock()
        for pt in list(self.peers.values()):
            if not pt.info.nat.udp or not self.nat.udp:
                continue
            for pair, txid in pt.checks.due(now):
                self._ping(pt, pair.via, pair.remote, txid)
            if pt.sprayer is not None:
                for addr in pt.sprayer.due(now):
                    txid = pr.new_txid()
                    pt.birthday_txids[txid] = (addr, self.main)
                    self._ping(pt, self.main, addr, txid)
            if pt.opener is not None and pt.info.nat.public_endpoint:
                target = parse_endpoint(pt.info.nat.public_endpoint)
                for i in pt.opener.due(now):
                    if i < len(pt.punch):
                        txid = pr.new_txid()
                        pt.birthday_txids[txid] = (target, pt.punch[i])
                        self._ping(pt, pt.punch[i], target, txid)
            if len(pt.birthday_txids) > 8192:
                pt.birthday_txids.clear()
            self._select(pt)
