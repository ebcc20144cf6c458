"""The core's implementation of ``NodeHandle``: one per plugin, bound to its name.

Registries the handles share (datagram type bytes, signal kinds) live in
``HandleRegistry`` so a second registration of the same key can name both
plugins in its error.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.control import messages as m
from shoal.control.client import host_addresses
from shoal.errors import PluginError
from shoal.frames import FrameHandler
from shoal.path import Path
from shoal.plugin_api import (
    CORE_DATAGRAM_TYPES,
    DatagramHandler,
    Drop,
    NodeHandle,
    PeerView,
    S,
    SignalHandler,
)
from shoal.transport import Receive, Transport

if TYPE_CHECKING:
    from shoal.config import NodeConfig
    from shoal.identity import StaticKeypair
    from shoal.node import Node
    from shoal.peer import Peer

SIGNAL_MAX = 1024


@dataclass
class HandleRegistry:
    """Who registered what (plugin names), for collision errors."""

    datagram_owner: dict[int, str] = field(default_factory=dict)
    signal_owner: dict[str, str] = field(default_factory=dict)
    signal_handlers: dict[str, SignalHandler] = field(default_factory=dict)

    def claim_datagram(self, type_byte: int, plugin: str) -> None:
        if not 0 <= type_byte <= 255:
            raise PluginError(f"plugin {plugin!r}: datagram type {type_byte} is not a byte")
        if type_byte in CORE_DATAGRAM_TYPES:
            raise PluginError(f"plugin {plugin!r}: datagram type 0x{type_byte:02x} is the core's "
                              "own (handshakes and data); pick another byte")
        owner = self.datagram_owner.get(type_byte)
        if owner is not None:
            raise PluginError(f"plugins {owner!r} and {plugin!r} both register datagram type "
                              f"0x{type_byte:02x}; disable one of them")
        self.datagram_owner[type_byte] = plugin

    def claim_signal(self, kind: str, plugin: str, handler: SignalHandler) -> None:
        owner = self.signal_owner.get(kind)
        if owner is not None:
            raise PluginError(f"plugins {owner!r} and {plugin!r} both handle signal kind "
                              f"{kind!r}; disable one of them")
        self.signal_owner[kind] = plugin
        self.signal_handlers[kind] = handler


class PluginHandle(NodeHandle):
    def __init__(self, node: Node, plugin: str) -> None:
        self._node = node
        self.plugin = plugin

    # ------------------------------------------------------------ identity and config
    @property
    def config(self) -> NodeConfig:
        return self._node.cfg

    @property
    def keypair(self) -> StaticKeypair:
        kp = self._node.keypair
        assert kp is not None
        return kp

    def settings(self, model: type[S]) -> S:
        s = self._node.settings.get(self.plugin)
        if s is None:
            return model()
        if not isinstance(s, model):
            raise PluginError(f"plugin {self.plugin!r}: its settings are a "
                              f"{type(s).__name__}, not a {model.__name__}")
        return s

    @property
    def interface_name(self) -> str | None:
        tun = self._node.tun
        return None if tun is None else tun.name

    @property
    def virtual_ip(self) -> str | None:
        return self._node.virtual_ip

    @property
    def layer2(self) -> bool:
        return self._node.cfg.interface.mode == "tap"

    def clock(self) -> float:
        return self._engine.clock()

    def host_addresses(self) -> list[str]:
        return host_addresses(self._node.cfg.interface.name)

    @property
    def _engine(self) -> Any:
        eng = self._node.engine
        if eng is None:
            raise PluginError(f"plugin {self.plugin!r} used the node before it started")
        return eng

    # ------------------------------------------------------------ data path
    def register_datagram_handler(self, type_byte: int, handler: DatagramHandler) -> None:
        self._node.registry.claim_datagram(type_byte, self.plugin)
        self._engine.datagram_handlers[type_byte] = handler

    def register_frame_handler(self, handler: FrameHandler) -> None:
        self._engine.frame_handlers.append(handler)

    def count_drop(self, reason: Drop) -> None:
        drops = self._engine.drops
        setattr(drops, reason.value, getattr(drops, reason.value) + 1)

    def send_to_peer(self, peer: PeerView, packet: bytes) -> bool:
        return bool(self._engine.send_to_peer(peer, packet))

    def receiver(self, transport: Transport) -> Receive:
        return functools.partial(self._engine.on_datagram, via=transport)

    # ------------------------------------------------------------ peers
    @property
    def peers(self) -> Mapping[bytes, PeerView]:
        peers: Mapping[bytes, Peer] = self._engine.peers
        return peers

    def networks_of(self, peer_key: bytes) -> Sequence[str]:
        return self._node.networks_of(peer_key)

    def networks(self) -> list[str]:
        ctl = self._node.control
        if ctl is None:
            return []
        return [n.name for n in ctl.state.networks if n.role != "pending"]

    # ------------------------------------------------------------ paths
    @property
    def main_transport(self) -> Transport:
        t: Transport = self._engine.transport
        return t

    def offer_path(self, peer_key: bytes, path: Path, rtt: float | None, reason: str) -> None:
        self._node.paths.offer(peer_key, path, rtt, f"{self.plugin}: {reason}")

    def path_lost(self, peer_key: bytes, path: Path, reason: str) -> None:
        self._node.paths.lost(peer_key, path, f"{self.plugin}: {reason}")

    # ------------------------------------------------------------ control plane
    @property
    def online(self) -> bool:
        ctl = self._node.control
        return bool(ctl is not None and ctl.state.online)

    def announce(self, endpoints: list[str], nat: m.NatInfo) -> None:
        self._node.announce(endpoints, nat)

    def signal(self, peer_key: bytes, kind: str, data: str) -> None:
        if len(data) > SIGNAL_MAX:
            raise ValueError(f"signal data is {len(data)} characters; at most {SIGNAL_MAX}")
        self._node.send_signal(peer_key, kind, data)

    def register_signal_handler(self, kind: str, handler: SignalHandler) -> None:
        self._node.registry.claim_signal(kind, self.plugin, handler)
