"""A running node: config + plugins + identity + interface + engine + local API.

This is the asyncio shell around the sans-IO pieces. ``Node.run`` returns when
``stop`` is set (SIGINT/SIGTERM in ``shoal up``) and always releases the
interface, the sockets and the API socket on the way out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

from shoal import __version__, wire
from shoal.api import ApiServer
from shoal.config import NodeConfig, parse_endpoint, plugin_settings
from shoal.engine import Engine
from shoal.errors import ShoalError
from shoal.identity import StaticKeypair, decode_public_key
from shoal.peer import Peer, Timers
from shoal.plugin_context import PluginContext
from shoal.plugins import load_plugins
from shoal.transport import Transport
from shoal.tun import LinuxTun, TunDevice

log = logging.getLogger(__name__)

TunFactory = Callable[[NodeConfig], TunDevice]


def linux_tun(cfg: NodeConfig) -> TunDevice:
    return LinuxTun(cfg.interface.name, cfg.interface.address, cfg.interface.mtu,
                    cfg.interface.mode)


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
        self.ready = asyncio.Event()

    def _transport(self) -> Transport:
        transports = [t for t in self.pm.hook.shoal_transport_create(context=self.context) if t]
        if not transports:
            raise ShoalError("no transport plugin is enabled: add \"udp\" to 'plugins' "
                             "(pip install shoal-transport-udp)")
        return transports[0]  # type: ignore[no-any-return]

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        self.keypair = load_keypair(cfg, self.pm)
        transport = self._transport()
        t = cfg.tunnel
        timers = Timers(rekey_after_time=t.rekey_after_time,
                        rekey_after_messages=t.rekey_after_messages, keepalive=t.keepalive)
        ciphers = tuple(wire.CIPHER_IDS[c] for c in t.ciphers)
        try:
            self.tun = self.tun_factory(cfg)
            self.engine = Engine(self.keypair, self.tun.fileno(), transport, ciphers, timers)
            self.engine.on_peer_up = self._peer_up
            self.pm.hook.shoal_frames_register_handlers(
                register=self.engine.frame_handlers.append, context=self.context)
            for p in cfg.peers:
                ep = parse_endpoint(p.endpoint) if p.endpoint else None
                self.engine.add_peer(p.name, decode_public_key(p.public_key), p.virtual_ip, ep)
            await self.engine.start()
            self.api = ApiServer(cfg.api_socket, self.handle_api)
            await self.api.start()
            self.pm.hook.shoal_lifecycle_node_up(context=self.context)
            log.info("node %s up: %s, key %s", cfg.name, self.virtual_ip, self.keypair.public_b64)
            self.ready.set()
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        try:
            self.pm.hook.shoal_lifecycle_node_down(context=self.context)
        except Exception:  # noqa: BLE001 - shutting down regardless
            log.exception("plugin failed during shutdown")
        if self.api is not None:
            await self.api.close()
        if self.engine is not None:
            self.engine.stop()
        if self.tun is not None:
            self.tun.close()
        log.info("node %s stopped", self.cfg.name)

    def _peer_up(self, peer: Peer) -> None:
        self.pm.hook.shoal_lifecycle_peer_up(context=self.context, peer_name=peer.name,
                                             public_key=peer.public_key_b64)

    @property
    def virtual_ip(self) -> str | None:
        a = self.cfg.interface.address
        return str(ipaddress.ip_interface(a).ip) if a else None

    # ------------------------------------------------------------ local API
    async def handle_api(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "status":
            return self.status()
        raise ShoalError(f"unknown command {cmd!r}")

    def status(self) -> dict[str, Any]:
        eng = self.engine
        assert eng is not None and self.keypair is not None
        now = eng.clock()
        peers = []
        for p in eng.peers.values():
            online = p.online(now)
            peers.append({
                "name": p.name,
                "public_key": p.public_key_b64,
                "virtual_ip": p.virtual_ip,
                "online": online,
                "networks": [],
                "path": "direct" if online else "none",
                "transport": eng.transport.name if online else None,
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
        return {
            "node": {
                "name": self.cfg.name,
                "version": __version__,
                "public_key": self.keypair.public_b64,
                "virtual_ip": self.virtual_ip,
                "online": True,
                "nat": {"mapping": "unknown", "filtering": "unknown", "public_endpoint": None},
                "interface": self.tun.name if self.tun else None,
                "listen": eng.transport.local_endpoints(),
                "drops": eng.drop_counts(),
            },
            "networks": [],
            "peers": peers,
        }


def _fmt_endpoint(ep: Any) -> str | None:
    if ep is None:
        return None
    if isinstance(ep, tuple) and len(ep) >= 2:
        return f"{ep[0]}:{ep[1]}"
    return str(ep)
