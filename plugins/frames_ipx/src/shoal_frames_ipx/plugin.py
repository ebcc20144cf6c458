"""Entry point ``ipx``: IPX over the virtual LAN and a DOSBox IPXNET bridge.

* TAP mode: IPX frames (all four framings) are Ethernet frames like any other;
  the engine carries unicast ones by MAC and the broadcast plugin floods the
  broadcasts (SAP, RIP, game discovery). This plugin counts them per framing
  and direction (``frame_counter``) at no cost to the data path.
* Any mode, with ``ipxnet_listen`` set: a DOSBox IPXNET server for the DOSBox
  sessions on this machine, bridged to the same server on every other node of
  the node's networks (``ipxnet``, ``bridge``).

``shoal status --json`` gains an ``ipx`` section.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shoal.config import parse_endpoint
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin

from shoal_frames_ipx.bridge import IpxnetService
from shoal_frames_ipx.frame_counter import IpxFrameCounter

log = logging.getLogger(__name__)

DEFAULT_BRIDGE_PORT = 2213


class IpxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ipxnet_listen: str | None = None  # "127.0.0.1:213" -> DOSBox: ipxnet connect 127.0.0.1 213
    bridge_port: int = Field(DEFAULT_BRIDGE_PORT, ge=1, le=65535)  # UDP, on the overlay address
    count_frames: bool = True  # TAP mode: count IPX frames on the interface

    @field_validator("ipxnet_listen")
    @classmethod
    def _ep(cls, v: str | None) -> str | None:
        if v is not None:
            parse_endpoint(v)
        return v


class IpxPlugin(NodePlugin):
    """What the plugin holds for one running node."""

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self.settings = node.settings(IpxSettings)
        self.service: IpxnetService | None = None
        self.frames: IpxFrameCounter | None = None
        self.frames_error: str | None = None
        self._starting: asyncio.Task[None] | None = None

    def peer_ips(self) -> set[bytes]:
        """Overlay addresses of the peers that share a network with this node."""
        node = self.node
        return {p.vip_packed for key, p in node.peers.items() if node.networks_of(key)}

    def peer_name(self, ip: bytes) -> str:
        for p in self.node.peers.values():
            if p.vip_packed == ip:
                return str(p.name)
        return socket.inet_ntoa(ip)

    def start(self) -> None:
        node, s = self.node, self.settings
        l2 = node.layer2
        if l2 and "broadcast" not in node.config.plugins:
            log.warning("ipx: in TAP mode IPX broadcasts (and ARP) need the broadcast plugin: "
                        "add \"broadcast\" to 'plugins'")
        iface = node.interface_name
        if l2 and s.count_frames and iface is not None:
            self.frames = IpxFrameCounter()
            try:
                self.frames.start(iface)
            except OSError as e:
                self.frames_error = f"cannot watch {iface}: {e.strerror}"
                log.warning("ipx: %s; IPX frames are carried but not counted", self.frames_error)
                self.frames = None
        if s.ipxnet_listen is not None:
            self.service = IpxnetService(parse_endpoint(s.ipxnet_listen), s.bridge_port,
                                         lambda: node.virtual_ip, self.peer_ips)
            self._starting = asyncio.get_running_loop().create_task(self.service.start())

    def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        if self.service is not None:
            self.service.close()
        if self.frames is not None:
            self.frames.close()

    def status(self, status: dict[str, Any]) -> None:
        status["ipx"] = {
            "ipxnet": self.service.status(self.peer_name) if self.service else None,
            "frames": dict(self.frames.counts) if self.frames else None,
            "frames_error": self.frames_error,
        }


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("ipx", IpxSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> IpxPlugin:
    return IpxPlugin(node)
