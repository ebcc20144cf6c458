"""A running node: config + plugins + identity + interface + engine + local API.

This is the asyncio shell around the sans-IO pieces. ``Node.run`` returns when
``stop`` is set (SIGINT/SIGTERM in ``shoal up``) and always releases the
interface, the sockets and the API socket on the way out.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

from shoal import __version__, wire
from shoal.addressing import ipv6_for, mac_for_key, mac_str
from shoal.api import ApiServer
from shoal.config import NodeConfig, parse_endpoint, plugin_settings
from shoal.control import messages as m
from shoal.control.client import ControlClient, host_addresses
from shoal.engine import Engine
from shoal.errors import ShoalError
from shoal.identity import StaticKeypair, decode_public_key
from shoal.metrics import MetricsEndpoint, start_node_metrics
from shoal.path_report import path_reports
from shoal.peer import Peer, Timers
from shoal.plugin_context import PluginContext
from shoal.plugins import load_plugins
from shoal.routing.manager import RouteManager
from shoal.transport import Transport
from shoal.tun import LinuxTun, TunDevice

log = logging.getLogger(__name__)

TunFactory = Callable[[NodeConfig, bytes], TunDevice]
STALE_GRACE = 15.0


def linux_tun(cfg: NodeConfig, mac: bytes | None = None) -> TunDevice:
    return LinuxTun(cfg.interface.name, cfg.interface.address, cfg.interface.mtu,
                    cfg.interface.mode, mac)


def load_keypair(cfg: NodeConfig, pm: pluggy.PluginManager, create: bool = True) -> StaticKeypair:
    kp = pm.hook.shoal_identity_load_keypair(state_dir=Path(cfg.state_dir), create=create)
    if kp is None:
        raise ShoalError("no identity plugin returned a key pair")
    return kp  # type: ignore[no-any-return]


class Node:
    def __init__(self, cfg: NodeConfig, pm: pluggy.PluginManager | None = None,
                 tun_factory: TunFactory = linux_tun, config_path: str = "node.toml") -> None:
        self.cfg = cfg
        self.pm = pm or load_plugins(cfg.plugins)
        self.context = PluginContext(cfg, plugin_settings(cfg, self.pm, config_path), node=self)
        self.tun_factory = tun_factory
        self.keypair: StaticKeypair | None = None
        self.engine: Engine | None = None
        self.tun: TunDevice | None = None
        self.api: ApiServer | None = None
        self.metrics: MetricsEndpoint | None = None
        self.control: ControlClient | None = None
        self.transports: list[Any] = []
        self.traversal: Any = None
        self.routing: RouteManager | None = None
        self._stale: dict[bytes, float] = {}   # peers missing from a snapshot: key -> deadline
        self.server_peers: dict[bytes, m.PeerInfo] = {}   # tunnels the server asked for
        self.offline_peers: dict[bytes, m.PeerInfo] = {}  # known members, now offline
        self._address = cfg.interface.address
        self.ready = asyncio.Event()

    def _transports(self) -> Transport:
        """All transports plugins offer; returns the main one (the first direct one)."""
        self.transports = [t for t in self.pm.hook.shoal_transport_create(context=self.context)
                           if t]
        direct = [t for t in self.transports if getattr(t, "kind", "direct") == "direct"]
        if not direct:
            raise ShoalError("no transport plugin is enabled: add \"udp\" to 'plugins' "
                             "(pip install shoal-transport-udp)")
        return direct[0]  # type: ignore[no-any-return]

    def relay(self) -> Any:
        """The relay transport, if one is ready."""
        for t in self.transports:
            if getattr(t, "kind", None) == "relay" and getattr(t, "ready", False):
                return t
        return None

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        self.keypair = load_keypair(cfg, self.pm)
        control_task: asyncio.Task[None] | None = None
        waiters: list[asyncio.Task[Any]] = []
        transport = self._transports()
        t = cfg.tunnel
        timers = Timers(rekey_after_time=t.rekey_after_time,
                        rekey_after_messages=t.rekey_after_messages, keepalive=t.keepalive)
        ciphers = tuple(wire.CIPHER_IDS[c] for c in t.ciphers)
        try:
            self.tun = self.tun_factory(cfg, mac_for_key(self.keypair.public))
            self.engine = Engine(self.keypair, self.tun.fileno(), transport, ciphers, timers,
                                 mode=cfg.interface.mode)
            self.engine.on_peer_up = self._peer_up
            self.pm.hook.shoal_frames_register_handlers(
                register=self.engine.frame_handlers.append, context=self.context)
            for p in cfg.peers:
                ep = parse_endpoint(p.endpoint) if p.endpoint else None
                self.engine.add_peer(p.name, decode_public_key(p.public_key), p.virtual_ip, ep)
            await self.engine.start()
            self.engine.path_policy = prefer_direct
            self.routing = RouteManager(
                self.engine, lambda: self.tun.name if self.tun else None,
                self.keypair.public_b64,
                lambda: self.control.state.networks if self.control else [],
                lambda: self.server_peers)
            loop = asyncio.get_running_loop()
            for t in self.transports:
                if t is not transport:
                    await t.start(loop, functools.partial(self.engine.on_datagram, via=t))
                if hasattr(t, "on_ready"):
                    t.on_ready = self._relay_ready
            agents = [a for a in self.pm.hook.shoal_traversal_create(context=self.context) if a]
            self.traversal = agents[0] if agents else None
            if self.traversal is not None:
                self.traversal.start(self)
            waiters.append(asyncio.create_task(self._expire_stale()))
            self.api = ApiServer(cfg.api_socket, self.handle_api)
            await self.api.start()
            self.metrics = await start_node_metrics(self)
            if cfg.server is not None:
                self.control = self._control_client(
                    [(a, decode_public_key(k)) for a, k in cfg.server.endpoints()])
                control_task = asyncio.create_task(self.control.run())
            self.pm.hook.shoal_lifecycle_node_up(context=self.context)
            log.info("node %s up: %s, key %s", cfg.name, self.virtual_ip or "(address from server)",
                     self.keypair.public_b64)
            self.ready.set()
            waiters.append(asyncio.create_task(stop.wait()))
            if control_task is not None:
                waiters.append(control_task)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if control_task is not None and control_task.done():
                control_task.result()  # a fatal control error (e.g. wrong server key) ends the node
        finally:
            if control_task is not None and not control_task.done():
                assert self.control is not None
                await self.control.bye()
                control_task.cancel()
            for t in waiters:
                t.cancel()
            await self.close()

    # ------------------------------------------------------------ control plane
    def _control_client(self, servers: list[tuple[str, bytes]]) -> ControlClient:
        assert self.keypair is not None and self.engine is not None
        engine = self.engine
        iface = self.cfg.interface.name

        def endpoints() -> list[str]:
            port = udp_port()
            return [f"{ip}:{port}" for ip in host_addresses(iface)] if port else []

        def udp_port() -> int:
            for ep in engine.transport.local_endpoints():
                return int(ep.rpartition(":")[2])
            return 0

        return ControlClient(self.keypair, self.cfg.name, servers, None, endpoints,
                             udp_port, self._on_welcome, self._on_peers, self._join_configured,
                             on_networks=self._refresh_routes,
                             paths=lambda: path_reports(self.engine))

    def _refresh_routes(self) -> None:
        if self.routing is not None:
            self.routing.refresh()

    def _on_welcome(self, w: m.Welcome) -> None:
        for t in self.transports:
            if hasattr(t, "on_welcome"):
                t.on_welcome(w)
        if self.traversal is not None:
            self.traversal.on_welcome(w)
        address = f"{w.virtual_ip}/{w.prefix_len}"
        if address != self._address:
            if self.tun is not None and hasattr(self.tun, "set_address"):
                self.tun.set_address(address)
            self._address = address

    def _on_peers(self, msg: m.Peers) -> None:
        eng = self.engine
        assert eng is not None
        static = {decode_public_key(p.public_key) for p in self.cfg.peers}
        if msg.full:
            # After a re-login (e.g. the server restarted) peers that have not
            # logged in again yet are missing from the snapshot. Tunnels that
            # still carry traffic get a grace period instead of being cut.
            wanted = {decode_public_key(p.public_key) for p in msg.up}
            now = eng.clock()
            for key in list(self.server_peers):
                if key in wanted:
                    continue
                p = eng.peers.get(key)
                if p is not None and p.online(now):
                    self._stale.setdefault(key, now + STALE_GRACE)
                else:
                    self._peer_gone(key)
        for info in msg.up:
            key = decode_public_key(info.public_key)
            if key in static or key == self.keypair.public:  # type: ignore[union-attr]
                continue
            candidates = []
            for e in info.endpoints:
                try:
                    candidates.append(parse_endpoint(e))
                except ValueError:
                    continue
            existing = eng.peers.get(key)
            peer = eng.add_peer(info.name, key, info.virtual_ip,
                                candidates[0] if candidates else None, candidates)
            relay = self.relay()
            if existing is None and relay is not None:
                # Start on the relay at once; a direct path takes over when one answers.
                peer.via, peer.send, peer.endpoint = relay, relay.send, relay.endpoint_for(key)
            self.server_peers[key] = info
            self.offline_peers.pop(key, None)
            self._stale.pop(key, None)
            if self.traversal is not None:
                self.traversal.on_peer(peer, info)
        for k in msg.down:
            self._peer_gone(decode_public_key(k))
        self._refresh_routes()

    def _relay_ready(self, relay: Any) -> None:
        """A relay became usable: peers without a working tunnel try through it at once."""
        assert self.engine is not None
        for key in self.server_peers:
            p = self.engine.peers.get(key)
            if p is not None and (p.current is None or getattr(p, "direct_dead", False)):
                p.via, p.send, p.endpoint = relay, relay.send, relay.endpoint_for(key)
                self.engine.kick(p)

    async def _expire_stale(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.engine.clock() if self.engine else 0.0
            for key, deadline in list(self._stale.items()):
                if now >= deadline:
                    self._peer_gone(key)

    def _peer_gone(self, key: bytes) -> None:
        assert self.engine is not None
        self._stale.pop(key, None)
        if self.traversal is not None:
            self.traversal.on_peer_gone(key)
        info = self.server_peers.pop(key, None)
        if info is not None:
            self.offline_peers[key] = info
        p = self.engine.peers.get(key)
        if p is not None:
            self.engine.remove_peer(key)
            self.pm.hook.shoal_lifecycle_peer_down(context=self.context, peer_name=p.name,
                                                   public_key=p.public_key_b64)

    async def _join_configured(self) -> None:
        """Join (or create) the networks listed in the config, after each login."""
        assert self.control is not None
        joined = {n.name for n in self.control.state.networks if n.role != "pending"}
        for net in self.cfg.networks:
            if net.name in joined:
                continue
            try:
                password = net.password
                if net.password_file:
                    password = Path(net.password_file).read_text().strip()
                if password is None:
                    raise ShoalError(f"networks: {net.name!r} has no password")
                if net.create and net.name not in joined:
                    try:
                        await self.control.request("create", {"name": net.name,
                                                              "password": password})
                        log.info("created network %s", net.name)
                        continue
                    except ShoalError as e:
                        if "already exists" not in str(e):
                            raise
                await self.control.request("join", {"name": net.name, "password": password})
                log.info("joined network %s", net.name)
            except (ShoalError, OSError) as e:
                log.error("network %s: %s", net.name, e)
        await self._announce_configured_routes()

    async def _announce_configured_routes(self) -> None:
        """Announce the ``routes`` of each configured network (this node is their gateway)."""
        assert self.control is not None
        for net in self.cfg.networks:
            for r in net.routes:
                try:
                    info = await self.control.request("route_add", {
                        "name": net.name, "prefix": r.prefix, "masquerade": r.masquerade})
                    log.info("network %s: route %s announced%s", net.name, r.prefix,
                             "" if info and info.get("approved")
                             else "; waiting for the owner's approval")
                except ShoalError as e:
                    log.error("network %s: route %s: %s", net.name, r.prefix, e)

    async def close(self) -> None:
        if self.traversal is not None:
            self.traversal.close()
        try:
            self.pm.hook.shoal_lifecycle_node_down(context=self.context)
        except Exception:  # noqa: BLE001 - shutting down regardless
            log.exception("plugin failed during shutdown")
        if self.api is not None:
            await self.api.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.routing is not None:
            await self.routing.close()
        if self.engine is not None:
            self.engine.stop()
        for t in self.transports:
            if self.engine is None or t is not self.engine.transport:
                t.close()
        if self.tun is not None:
            self.tun.close()
        log.info("node %s stopped", self.cfg.name)

    def _peer_up(self, peer: Peer) -> None:
        self.pm.hook.shoal_lifecycle_peer_up(context=self.context, peer_name=peer.name,
                                             public_key=peer.public_key_b64)

    @property
    def virtual_ip(self) -> str | None:
        a = self._address
        return str(ipaddress.ip_interface(a).ip) if a else None

    # ------------------------------------------------------------ local API
    async def handle_api(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "status":
            return self.status()
        if cmd == "netcheck":
            return await self.netcheck()
        if cmd == "ping":
            return await self.ping(str(args.get("peer", "")), int(args.get("count", 4)),
                                   float(args.get("interval", 1.0)))
        if cmd == "network":
            if self.control is None:
                raise ShoalError("this node has no [server]: networks need a coordination server")
            op = args.get("op")
            if op not in m.ARGS:
                raise ShoalError(f"unknown network operation {op!r}")
            return await self.control.request(op, args.get("args") or {})
        raise ShoalError(f"unknown command {cmd!r}")

    def find_peer(self, who: str) -> Peer:
        """A peer by name, overlay address or public key."""
        assert self.engine is not None
        hits = [p for p in self.engine.peers.values()
                if who in (p.name, p.virtual_ip, p.public_key_b64)]
        if not hits:
            raise ShoalError(f"no peer called {who!r} (see 'shoal status')")
        if len(hits) > 1:
            raise ShoalError(f"several peers are called {who!r}; use the address or key")
        return hits[0]

    async def ping(self, who: str, count: int, interval: float) -> dict[str, Any]:
        from shoal.overlay_ping import ping

        if not 1 <= count <= 1000 or not 0.01 <= interval <= 60:
            raise ShoalError("ping: count must be 1..1000 and interval 0.01..60 s")
        peer = self.find_peer(who)
        if self.virtual_ip is None:
            raise ShoalError("this node has no overlay address yet")
        rtts = await ping(self.virtual_ip, peer.virtual_ip, count, interval, timeout=2.0)
        return {"peer": peer.name, "virtual_ip": peer.virtual_ip, "rtt_ms": rtts,
                "path": getattr(peer.via, "kind", "direct") if peer.current else "none",
                "transport": getattr(peer.via, "name", None),
                "endpoint": _fmt_endpoint(peer.endpoint)}

    async def netcheck(self) -> dict[str, Any]:
        """NAT behaviour (fresh discovery when an agent is present) and relay reachability."""
        out: dict[str, Any] = {"nat": None, "relay": None,
                               "server": self.control.server if self.control else None,
                               "online": bool(self.control and self.control.state.online)}
        if self.traversal is not None:
            out["nat"] = await self.traversal.netcheck()
        for t in self.transports:
            if getattr(t, "kind", None) == "relay":
                out["relay"] = {"ready": getattr(t, "ready", False), "mode": getattr(t, "mode", None),
                                "address": getattr(t, "relay", None),
                                "rtt_ms": getattr(t, "rtt_ms", None)}
        return out

    def status(self) -> dict[str, Any]:
        eng = self.engine
        assert eng is not None and self.keypair is not None
        now = eng.clock()
        peers = []
        for p in eng.peers.values():
            info = self.server_peers.get(p.public_key)
            online = p.online(now)
            peers.append({
                "name": p.name,
                "public_key": p.public_key_b64,
                "virtual_ip": p.virtual_ip,
                "online": online,
                "state": p.state.value,
                "networks": info.networks if info else [],
                "path": (getattr(p.via, "kind", "direct") if online else "none"),
                "transport": getattr(p.via, "name", None) if online else None,
                "endpoint": _fmt_endpoint(p.endpoint),
                "rtt_ms": None if p.rtt_ms is None else round(p.rtt_ms, 2),
                "rx_bytes": p.stats.rx_bytes,
                "tx_bytes": p.stats.tx_bytes,
                "rx_packets": p.stats.rx_packets,
                "tx_packets": p.stats.tx_packets,
                "handshakes": p.stats.handshakes,
                "cipher": wire.CIPHER_NAMES[p.current.cipher] if p.current else None,
                "last_handshake_s": None if p.current is None else round(now - p.current.created, 1),
            })
        for info in self.offline_peers.values():
            peers.append({"name": info.name, "public_key": info.public_key,
                          "virtual_ip": info.virtual_ip, "online": False,
                          "networks": info.networks, "path": "none", "transport": None,
                          "endpoint": None, "rtt_ms": None, "rx_bytes": 0, "tx_bytes": 0})
        ctl = self.control.state if self.control else None
        # Online members as this node sees them: itself plus the peers it has a live
        # tunnel to through that network (presence is not re-pushed per network).
        online_in: dict[str, int] = {}
        for p in peers:
            if p["online"]:
                for net in p["networks"]:
                    online_in[net] = online_in.get(net, 0) + 1
        networks = [{"name": n.name, "role": n.role, "type": n.type, "members": n.members,
                     "online": (online_in.get(n.name, 0) + (1 if ctl and ctl.online else 0))
                     if n.role != "pending" else 0,
                     "join_mode": n.join_mode, "member_limit": n.member_limit,
                     "pending": n.pending}
                    for n in (ctl.networks if ctl else [])]
        status = {
            "node": {
                "name": self.cfg.name,
                "version": __version__,
                "public_key": self.keypair.public_b64,
                "virtual_ip": self.virtual_ip,
                "online": ctl.online if ctl else True,
                "server": self.control.server if self.control else None,
                "server_error": ctl.last_error if ctl else None,
                "nat": {"mapping": "unknown", "filtering": "unknown", "public_endpoint": None},
                "interface": self.tun.name if self.tun else None,
                "mode": self.cfg.interface.mode,
                "mac": mac_str(mac_for_key(self.keypair.public)),
                "virtual_ip6": ipv6_for(self.virtual_ip) if self.virtual_ip else None,
                "listen": eng.transport.local_endpoints(),
                "drops": eng.drop_counts(),
            },
            "networks": networks,
            "peers": peers,
            "routes": self.routing.status() if self.routing else [],
        }
        self.pm.hook.shoal_status_extend(status=status, context=self.context)
        return status


def prefer_direct(peer: Peer, addr: Any, via: Any) -> bool:
    """Path policy: follow the peer anywhere, except from a live direct path to the relay.

    A direct path counts as live while the traversal agent has not declared it
    dead (``peer.direct_dead``); without an agent, only a peer that has never
    been reached directly is followed onto the relay.
    """
    if getattr(via, "kind", "direct") != "relay":
        return True
    if getattr(peer.via, "kind", "direct") == "relay":
        return True
    return bool(getattr(peer, "direct_dead", False)) or peer.current is None


def _fmt_endpoint(ep: Any) -> str | None:
    if ep is None:
        return None
    if isinstance(ep, tuple) and len(ep) >= 2:
        return f"{ep[0]}:{ep[1]}"
    return str(ep)
