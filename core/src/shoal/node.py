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

from shoal import path_probe, plugin_api, wire
from shoal.addressing import mac_for_key
from shoal.api import ApiServer
from shoal.config import NodeConfig, plugin_settings
from shoal.control import messages as m
from shoal.control.client import ControlClient, host_addresses
from shoal.engine import Engine
from shoal.errors import PluginError, ShoalError
from shoal.identity import StaticKeypair, decode_public_key
from shoal.metrics import MetricsEndpoint, start_node_metrics
from shoal.node_api import NodeApi
from shoal.node_handle import HandleRegistry, PluginHandle
from shoal.node_status import render_status
from shoal.path import Path as PeerPath
from shoal.path_control import PathControl
from shoal.path_report import path_reports
from shoal.peer import Peer, Timers
from shoal.peer_reconcile import Action, Gone, PeerReconciler, Up
from shoal.plugin_api import NodePlugin
from shoal.plugins import load_plugins
from shoal.routing.manager import RouteManager
from shoal.transport import PathKind, Readiness, Transport
from shoal.tun import LinuxTun, TunDevice

log = logging.getLogger(__name__)

TunFactory = Callable[[NodeConfig, bytes], TunDevice]
PATH_ROUND = 0.25


def linux_tun(cfg: NodeConfig, mac: bytes | None = None) -> TunDevice:
    return LinuxTun(cfg.interface.name, cfg.interface.address, cfg.interface.mtu,
                    cfg.interface.mode, mac, offload=cfg.interface.offload)


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
        self.reconcile = PeerReconciler(b"", {decode_public_key(p.public_key)
                                              for p in cfg.peers})
        self._static_keys = {decode_public_key(p.public_key) for p in cfg.peers}
        self._address = cfg.interface.address
        self.ready = asyncio.Event()
        self._closing = False
        self._announced: tuple[list[str], m.NatInfo] | None = None   # last traversal report
        self.api_dispatch = NodeApi(self)
        self._reported: list[str] | None = None    # candidates last sent to the server

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

    def for_each_plugin(self, what: str, call: Callable[[NodePlugin], Any],
              slots: Sequence[PluginSlot] | None = None) -> None:
        """Run one event on every plugin; a failing plugin is logged, not fatal."""
        for slot in slots if slots is not None else self.slots:
            try:
                call(slot.plugin)
            except Exception:  # noqa: BLE001 - one plugin must not take the node down
                log.exception("plugin %s failed in %s", slot.name, what)

    @property
    def server_peers(self) -> dict[bytes, m.PeerInfo]:
        """Peers the server asked this node to tunnel to."""
        return self.reconcile.server_peers

    @property
    def offline_peers(self) -> dict[bytes, m.PeerInfo]:
        return self.reconcile.offline

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
        self.reconcile.own_key = self.keypair.public
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
                                 mode=cfg.interface.mode, vnet_hdr=self.tun.vnet_hdr,
                                 tun_uso="uso4" in self.tun.offloads)
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
        candidates = self._candidates(endpoints)
        if candidates == self._reported:
            return  # nothing new (e.g. a relay client flapping): peers are not disturbed
        self._reported = candidates
        self.control.report(m.Report(endpoints=candidates, nat=nat))

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
            self._reported = self._candidates(endpoints)
            self.control.report(m.Report(endpoints=self._reported, nat=nat))

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
            self._reported = self._candidates([f"{ip}:{port}" for ip in host_addresses(iface)]
                                              if port else [])
            return self._reported

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
                             on_signal=self._on_signal, dial=dial,
                             on_grants=self._on_grants, auth_key=self._auth_key())

    def _refresh_routes(self) -> None:
        if self.routing is not None:
            self.routing.refresh()

    def _auth_key(self) -> str | None:
        """The pre-auth key from ``[server] auth_key`` or ``auth_key_file``, if any."""
        ref = self.cfg.server
        if ref is None or ref.auth_key_file is None:
            return None if ref is None else ref.auth_key
        try:
            key = Path(ref.auth_key_file).read_text().strip()
        except OSError as e:
            raise ShoalError(f"{ref.auth_key_file}: cannot read the pre-auth key "
                             f"(server.auth_key_file): {e.strerror or e}") from None
        if not key:
            raise ShoalError(f"{ref.auth_key_file}: the pre-auth key file is empty "
                             "(server.auth_key_file); put the key from "
                             "'shoal server key create' in it")
        return key

    def _on_welcome(self, w: m.Welcome) -> None:
        address = f"{w.virtual_ip}/{w.prefix_len}"
        if address != self._address:
            if self.tun is not None and hasattr(self.tun, "set_address"):
                self.tun.set_address(address)
            self._address = address
        self.for_each_plugin("on_login", lambda p: p.on_login(w))

    def _on_grants(self, g: m.Grants) -> None:
        """Fresh relay grants (refresh, or the node's networks changed)."""
        self.for_each_plugin("on_grants", lambda p: p.on_grants(g))

    def _on_peers(self, msg: m.Peers) -> None:
        eng = self.engine
        assert eng is not None
        now = eng.clock()

        def carries_traffic(key: bytes) -> bool:
            p = eng.peers.get(key)
            return p is not None and p.online(now)

        self._act(self.reconcile.apply(msg, now, carries_traffic))
        self._refresh_routes()

    def _act(self, actions: list[Action]) -> None:
        """Apply what peer reconciliation decided."""
        eng = self.engine
        assert eng is not None
        for a in actions:
            match a:
                case Up(key, info):
                    candidates = self._parse_candidates(info.endpoints, eng.transport)
                    existing = eng.peers.get(key)
                    peer = eng.add_peer(info.name, key, info.virtual_ip,
                                        candidates[0] if candidates else None, candidates)
                    if existing is None:
                        self.paths.start_peer(peer)
                    else:
                        self.paths.update_peer(peer)
                    self.for_each_plugin("on_peer",
                                         lambda p, peer=peer, info=info: p.on_peer(peer, info))
                case Gone(key):
                    self._peer_gone(key)

    def _parse_candidates(self, endpoints: list[str], main: Transport) -> list[PeerPath]:
        """Announced candidates as paths; those of transports this node lacks are skipped."""
        out = []
        for e in endpoints:
            t, text = self._split_candidate(e, main)
            if t is None:
                continue
            try:
                out.append(PeerPath.over(t, t.parse_endpoint(text)))
            except ValueError:
                continue
        return out

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
            if self.engine is not None:
                self._act(self.reconcile.expire(self.engine.clock()))

    def _peer_gone(self, key: bytes) -> None:
        assert self.engine is not None
        self.for_each_plugin("on_peer_gone", lambda pl: pl.on_peer_gone(key))
        self.paths.forget(key)
        p = self.engine.peers.get(key)
        if p is not None:
            self.engine.remove_peer(key)
            self.for_each_plugin("on_peer_down", lambda pl: pl.on_peer_down(p))

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
        self.for_each_plugin("stop", lambda p: p.stop(), slots=list(reversed(self.slots)))
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
        self.for_each_plugin("on_peer_up", lambda p: p.on_peer_up(peer))

    @property
    def virtual_ip(self) -> str | None:
        a = self._address
        return str(ipaddress.ip_interface(a).ip) if a else None

    # ------------------------------------------------------------ local API and status
    async def handle_api(self, cmd: str, args: dict[str, Any]) -> Any:
        return await self.api_dispatch.handle(cmd, args)

    def status(self) -> dict[str, Any]:
        return render_status(self)
