"""A running node: config + plugins + identity + interface + engine + local API.

This is the asyncio shell around the sans-IO pieces. ``Node.run`` returns when
``stop`` is set (SIGINT/SIGTERM in ``shoal up``) and always releases the
interface, the sockets and the API socket on the way out.

Plugins take part through the contract in ``shoal.plugin_api`` only: each
enabled plugin's ``shoal_node_plugin`` hook is called with its own
``NodeHandle`` (in ``plugins = [...]`` order, which is preference), and the
returned ``NodePlugin`` offers transports and receives events.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel

from shoal import __version__, path_probe, plugin_api, wire
from shoal.addressing import ipv6_for, mac_for_key, mac_str
from shoal.api import ApiServer
from shoal.config import NodeConfig, plugin_settings
from shoal.control import messages as m
from shoal.control.client import ControlClient, host_addresses
from shoal.engine import Engine
from shoal.errors import PluginError, ShoalError
from shoal.identity import StaticKeypair, decode_public_key
from shoal.metrics import MetricsEndpoint, start_node_metrics
from shoal.node_handle import HandleRegistry, PluginHandle
from shoal.path import Path as PeerPath
from shoal.path_control import PathControl
from shoal.path_report import path_reports
from shoal.peer import Peer, Timers
from shoal.plugin_api import NodePlugin
from shoal.plugins import load_plugins
from shoal.routing.manager import RouteManager
from shoal.transport import PathKind, Readiness, Transport, endpoint_text
from shoal.tun import LinuxTun, TunDevice

log = logging.getLogger(__name__)

TunFactory = Callable[[NodeConfig, bytes], TunDevice]
STALE_GRACE = 15.0
PATH_ROUND = 0.25


def linux_tun(cfg: NodeConfig, mac: bytes | None = None) -> TunDevice:
    return LinuxTun(cfg.interface.name, cfg.interface.address, cfg.interface.mtu,
                    cfg.interface.mode, mac)


def load_keypair(cfg: NodeConfig, pm: pluggy.PluginManager, create: bool = True) -> StaticKeypair:
    kp = pm.hook.shoal_identity_load_keypair(state_dir=Path(cfg.state_dir), create=create)
    if kp is None:
        raise ShoalError("no identity plugin returned a key pair")
    return kp  # type: ignore[no-any-return]


STATIC_NETWORK = (plugin_api.STATIC_NETWORK,)


@dataclass
class PluginSlot:
    """One enabled plugin's per-node object, its handle and its transports."""

    name: str
    plugin: NodePlugin
    handle: PluginHandle
    transports: list[Transport] = field(default_factory=list)


class Node:
    def __init__(self, cfg: NodeConfig, pm: pluggy.PluginManager | None = None,
                 tun_factory: TunFactory = linux_tun, config_path: str = "node.toml") -> None:
        self.cfg = cfg
        self.pm = pm or load_plugins(cfg.plugins)
        self.settings: dict[str, BaseModel] = plugin_settings(cfg, self.pm, config_path)
        self.tun_factory = tun_factory
        self.keypair: StaticKeypair | None = None
        self.engine: Engine | None = None
        self.tun: TunDevice | None = None
        self.api: ApiServer | None = None
        self.metrics: MetricsEndpoint | None = None
        self.control: ControlClient | None = None
        self.slots: list[PluginSlot] = []
        #: every transport, in preference order (``plugins`` order, then each plugin's order)
        self.transports: list[Transport] = []
        self.registry = HandleRegistry()
        self.paths = PathControl({}, self.transports)
        self._transport_plugin: dict[int, str] = {}
        self.routing: RouteManager | None = None
        self._stale: dict[bytes, float] = {}   # peers missing from a snapshot: key -> deadline
        self.server_peers: dict[bytes, m.PeerInfo] = {}   # tunnels the server asked for
        self.offline_peers: dict[bytes, m.PeerInfo] = {}  # known members, now offline
        self._static_keys = {decode_public_key(p.public_key) for p in cfg.peers}
        self._address = cfg.interface.address
        self.ready = asyncio.Event()
        self._closing = False
        self._announced: tuple[list[str], m.NatInfo] | None = None   # last traversal report

    # ------------------------------------------------------------ plugins
    def _create_plugins(self) -> Transport:
        """Call every plugin's ``shoal_node_plugin`` in preference order; returns the main
        transport (the first direct one)."""
        hook = self.pm.hook.shoal_node_plugin
        impls = {impl.plugin_name: impl for impl in hook.get_hookimpls()}
        for name, _ in self.pm.list_name_plugin():   # registration order = config order
            impl = impls.get(name)
            if impl is None:
                continue
            handle = PluginHandle(self, name)
            kwargs = {"node": handle}
            obj = impl.function(**{k: kwargs[k] for k in impl.argnames})
            if obj is None:
                continue
            if not isinstance(obj, NodePlugin):
                raise PluginError(f"plugin {name!r}: shoal_node_plugin returned a "
                                  f"{type(obj).__name__}, not a shoal.plugin_api.NodePlugin")
            slot = PluginSlot(name, obj, handle)
            for t in obj.transports():
                if not isinstance(t, Transport):
                    raise PluginError(f"plugin {name!r} offered a {type(t).__name__}, "
                                      "not a shoal.transport.Transport")
                slot.transports.append(t)
                self.transports.append(t)
                self._transport_plugin[id(t)] = name
            self.slots.append(slot)
        direct = [t for t in self.transports if t.kind is PathKind.DIRECT]
        if not direct:
            raise ShoalError("no transport plugin is enabled: add \"udp\" to 'plugins' "
                             "(pip install shoal-transport-udp)")
        return direct[0]

    def plugin_of(self, t: Transport) -> str | None:
        return self._transport_plugin.get(id(t))

    def _each(self, what: str, call: Callable[[NodePlugin], Any],
              slots: Sequence[PluginSlot] | None = None) -> None:
        """Run one event on every plugin; a failing plugin is logged, not fatal."""
        for slot in slots if slots is not None else self.slots:
            try:
                call(slot.plugin)
            except Exception:  # noqa: BLE001 - one plugin must not take the node down
                log.exception("plugin %s failed in %s", slot.name, what)

    def networks_of(self, key: bytes) -> Sequence[str]:
        info = self.server_peers.get(key)
        if info is not None:
            return info.networks
        return STATIC_NETWORK if key in self._static_keys else ()

    def relay(self) -> Transport | None:
        """The preferred ready relayed transport, if any."""
        for t in self.transports:
            if t.kind is PathKind.RELAYED and t.readiness is Readiness.READY:
                return t
        return None

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        self.keypair = load_keypair(cfg, self.pm)
        control_task: asyncio.Task[None] | None = None
        waiters: list[asyncio.Task[Any]] = []
        t = cfg.tunnel
        timers = Timers(rekey_after_time=t.rekey_after_time,
                        rekey_after_messages=t.rekey_after_messages, keepalive=t.keepalive)
        ciphers = tuple(wire.CIPHER_IDS[c] for c in t.ciphers)
        try:
            transport = self._create_plugins()
            self.tun = self.tun_factory(cfg, mac_for_key(self.keypair.public))
            self.engine = Engine(self.keypair, self.tun.fileno(), transport, ciphers, timers,
                                 mode=cfg.interface.mode)
            self.engine.on_peer_up = self._peer_up
            self.paths = PathControl(self.engine.peers, self.transports, self.engine.kick,
                                     self.engine.clock, self.keypair)
            self.engine.datagram_handlers[path_probe.TYPE_PATH_PROBE] = self._on_path_probe
            for p in cfg.peers:
                peer = self.engine.add_peer(p.name, decode_public_key(p.public_key),
                                            p.virtual_ip, self._static_path(p.endpoint, transport))
                self.paths.update_peer(peer)
            await self.engine.start()
            self.engine.path_policy = self.paths.may_roam
            self.routing = RouteManager(
                self.engine, lambda: self.tun.name if self.tun else None,
                self.keypair.public_b64,
                lambda: self.control.state.networks if self.control else [],
                lambda: self.server_peers)
            loop = asyncio.get_running_loop()
            for tr in self.transports:
                tr.watch(self._readiness)
                if tr is not transport:
                    await tr.start(loop, functools.partial(self.engine.on_datagram, via=tr))
            for slot in self.slots:   # a plugin that cannot start stops the node, loudly
                slot.plugin.start()
            waiters.append(asyncio.create_task(self._expire_stale()))
            waiters.append(asyncio.create_task(self._path_rounds()))
            self.api = ApiServer(cfg.api_socket, self.handle_api)
            await self.api.start()
            self.metrics = await start_node_metrics(self)
            if cfg.server is not None:
                self.control = self._control_client(
                    [(a, decode_public_key(k)) for a, k in cfg.server.endpoints()])
                control_task = asyncio.create_task(self.control.run())
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
            for w in waiters:
                w.cancel()
            await self.close()

    def _static_path(self, endpoint: str | None, main: Transport) -> PeerPath | None:
        """A ``[[peers]]`` endpoint: ``host:port`` on the main transport, or
        ``<plugin>=<text>`` on that plugin's transport."""
        if not endpoint:
            return None
        t, text = self._split_candidate(endpoint, main)
        if t is None:
            raise ShoalError(f"peers: endpoint {endpoint!r} names no enabled transport plugin")
        try:
            return PeerPath.over(t, t.parse_endpoint(text))
        except ValueError as e:
            raise ShoalError(f"peers: endpoint {endpoint!r}: {e}") from None

    def _split_candidate(self, text: str, main: Transport) -> tuple[Transport | None, str]:
        name, sep, rest = text.partition("=")
        if not sep:
            return main, text
        for t in self.transports:
            if self.plugin_of(t) == name:
                return t, rest
        return None, rest

    def _readiness(self, t: Transport, old: Readiness, new: Readiness, reason: str) -> None:
        if not self._closing:
            self.paths.readiness(t, old, new, reason, list(self.server_peers))
            main = self.engine.transport if self.engine else None
            if t is not main and Readiness.READY in (old, new):
                self._reannounce()  # its candidates (e.g. a TURN relayed address) changed

    def _reannounce(self) -> None:
        """Announce again with every transport's current candidates: the main endpoints
        and NAT last announced (by the traversal plugin), or the host addresses."""
        if self.control is None or not self.control.state.online:
            return
        if self._announced is not None:
            endpoints, nat = self._announced
        else:
            port = next((int(ep.rpartition(":")[2]) for ep in
                         (self.engine.transport.local_endpoints() if self.engine else [])), 0)
            endpoints = [f"{ip}:{port}" for ip in host_addresses(self.cfg.interface.name)] \
                if port else []
            nat = m.NatInfo()
        self.control.report(m.Report(endpoints=self._candidates(endpoints), nat=nat))

    # ------------------------------------------------------------ control plane
    def _candidates(self, main_endpoints: list[str]) -> list[str]:
        """What this node announces: the main transport's endpoints, then the other
        transports' candidates as ``<plugin>=<text>`` (the server keeps 16)."""
        out = list(main_endpoints)
        main = self.engine.transport if self.engine else None
        for t in self.transports:
            if t is not main:
                out += [f"{self.plugin_of(t)}={c}" for c in t.candidates()]
        return out[:16]

    def announce(self, endpoints: list[str], nat: m.NatInfo) -> None:
        self._announced = (list(endpoints), nat)
        if self.control is not None:
            self.control.report(m.Report(endpoints=self._candidates(endpoints), nat=nat))

    def send_signal(self, peer_key: bytes, kind: str, data: str) -> None:
        if self.control is not None:
            self.control.signal(peer_key, kind, data)

    def _on_signal(self, sig: m.Signal) -> None:
        handler = self.registry.signal_handlers.get(sig.kind)
        if handler is None:
            log.debug("signal of unknown kind %r dropped", sig.kind)
            return
        try:
            handler(decode_public_key(sig.sender), sig.data)
        except Exception:  # noqa: BLE001 - a plugin bug must not end the control session
            log.exception("signal handler for %r failed", sig.kind)

    def _control_client(self, servers: list[tuple[str, bytes]]) -> ControlClient:
        assert self.keypair is not None and self.engine is not None
        engine = self.engine
        iface = self.cfg.interface.name

        def endpoints() -> list[str]:
            port = udp_port()
            return self._candidates([f"{ip}:{port}" for ip in host_addresses(iface)]
                                    if port else [])

        def udp_port() -> int:
            for ep in engine.transport.local_endpoints():
                return int(ep.rpartition(":")[2])
            return 0

        dial = next((d for d in (slot.plugin.control_dialer() for slot in self.slots)
                     if d is not None), None)
        return ControlClient(self.keypair, self.cfg.name, servers, None, endpoints,
                             udp_port, self._on_welcome, self._on_peers, self._join_configured,
                             on_networks=self._refresh_routes,
                             paths=lambda: path_reports(self.engine),
                             on_signal=self._on_signal, dial=dial)

    def _refresh_routes(self) -> None:
        if self.routing is not None:
            self.routing.refresh()

    def _on_welcome(self, w: m.Welcome) -> None:
        address = f"{w.virtual_ip}/{w.prefix_len}"
        if address != self._address:
            if self.tun is not None and hasattr(self.tun, "set_address"):
                self.tun.set_address(address)
            self._address = address
        self._each("on_login", lambda p: p.on_login(w))

    def _on_peers(self, msg: m.Peers) -> None:
        eng = self.engine
        assert eng is not None
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
            if key in self._static_keys or key == self.keypair.public:  # type: ignore[union-attr]
                continue
            candidates = []
            for e in info.endpoints:
                t, text = self._split_candidate(e, eng.transport)
                if t is None:
                    continue  # a transport this node does not have
                try:
                    candidates.append(PeerPath.over(t, t.parse_endpoint(text)))
                except ValueError:
                    continue
            existing = eng.peers.get(key)
            peer = eng.add_peer(info.name, key, info.virtual_ip,
                                candidates[0] if candidates else None, candidates)
            if existing is None:
                self.paths.start_peer(peer)
            else:
                self.paths.update_peer(peer)
            self.server_peers[key] = info
            self.offline_peers.pop(key, None)
            self._stale.pop(key, None)
            self._each("on_peer", lambda p, peer=peer, info=info: p.on_peer(peer, info))
        for k in msg.down:
            self._peer_gone(decode_public_key(k))
        self._refresh_routes()

    def _on_path_probe(self, data: bytes, addr: Any, via: Transport) -> None:
        if not self.paths.on_probe(data, addr, via):
            assert self.engine is not None
            self.engine.drops.malformed += 1

    async def _path_rounds(self) -> None:
        """Path probes and path choice, every PATH_ROUND seconds."""
        while True:
            await asyncio.sleep(PATH_ROUND)
            try:
                self.paths.tick()
            except Exception:  # noqa: BLE001 - a bug here must not stop the node
                log.exception("path round failed")

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
        self._each("on_peer_gone", lambda pl: pl.on_peer_gone(key))
        info = self.server_peers.pop(key, None)
        if info is not None:
            self.offline_peers[key] = info
        self.paths.forget(key)
        p = self.engine.peers.get(key)
        if p is not None:
            self.engine.remove_peer(key)
            self._each("on_peer_down", lambda pl: pl.on_peer_down(p))

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
        self._closing = True
        self._each("stop", lambda p: p.stop(), slots=list(reversed(self.slots)))
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
            t.set_readiness(Readiness.CLOSED, "node stopped")
        if self.tun is not None:
            self.tun.close()
        log.info("node %s stopped", self.cfg.name)

    def _peer_up(self, peer: Peer) -> None:
        self._each("on_peer_up", lambda p: p.on_peer_up(peer))

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
                "path": path_word(peer) if peer.current else "none",
                "transport": None if peer.via is None else peer.via.name,
                "endpoint": endpoint_text(peer.endpoint)}

    async def netcheck(self) -> dict[str, Any]:
        """NAT behaviour (fresh discovery when an agent is present) and relay reachability."""
        out: dict[str, Any] = {"nat": None, "relay": None,
                               "server": self.control.server if self.control else None,
                               "online": bool(self.control and self.control.state.online)}
        for slot in self.slots:
            nat = await slot.plugin.netcheck()
            if nat is not None:
                out["nat"] = nat
                break
        relays = [{"transport": t.name, "ready": t.readiness is Readiness.READY, **t.describe()}
                  for t in self.transports if t.kind is PathKind.RELAYED]
        out["relay"] = relays[0] if relays else None
        out["relays"] = relays          # every relayed transport (relay, wss, turn, ...)
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
                "path": path_word(p) if online else "none",
                "transport": p.via.name if online and p.via is not None else None,
                "endpoint": endpoint_text(p.endpoint),
                "rtt_ms": None if p.rtt_ms is None else round(p.rtt_ms, 2),
                "paths": self.paths.status(p),
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
                "transports": [{"plugin": self.plugin_of(t), "name": t.name,
                                "kind": t.kind.value, "delivery": t.delivery.value,
                                "readiness": t.readiness.value, **t.describe()}
                               for t in self.transports],
            },
            "networks": networks,
            "peers": peers,
            "routes": self.routing.status() if self.routing else [],
        }
        self._each("status", lambda p: p.status(status))
        return status


def path_word(peer: Peer) -> str:
    """``status --json`` ``path``: ``direct``, ``relay`` or ``none``."""
    return "none" if peer.path is None else peer.path.kind.value
