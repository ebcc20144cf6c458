"""The asyncio shell around ``IpxnetBridge``: two UDP sockets and a clock.

* the IPXNET socket on ``ipxnet_listen`` (DOSBox: ``ipxnet connect 127.0.0.1 213``);
* the bridge socket on the node's overlay address and ``bridge_port``, where
  the bridges of the other nodes send. Being a plain UDP socket on the overlay,
  it works the same in TUN and TAP mode, and what arrives on it came through
  an authenticated tunnel from the address it claims.

The overlay socket is (re)bound when the node learns (or changes) its address
from the coordination server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Collection
from typing import Any

from shoal_frames_ipx.ipxnet import Action, IpxnetBridge, ToClient, ToNode

log = logging.getLogger(__name__)

WATCH_FAST, WATCH_SLOW = 0.25, 2.0


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receive: Callable[[bytes, Any], None]) -> None:
        self.receive = receive

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receive(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer without a bridge, and the like
        log.debug("ipxnet socket: %s", exc)


class IpxnetService:
    def __init__(self, listen: tuple[str, int], bridge_port: int,
                 local_ip: Callable[[], str | None], peers: Callable[[], Collection[bytes]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.listen = listen
        self.bridge_port = bridge_port
        self.local_ip = local_ip
        self.clock = clock
        self.bridge = IpxnetBridge(peers)
        self.error: str | None = None
        self._clients: asyncio.DatagramTransport | None = None
        self._overlay: asyncio.DatagramTransport | None = None
        self._overlay_ip: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._clients, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._from_client), local_addr=self.listen)
        except OSError as e:
            self.error = f"cannot listen on {self.listen[0]}:{self.listen[1]}: {e.strerror}"
            log.error("ipxnet: %s; DOSBox clients cannot connect", self.error)
            return
        self.listen = self._clients.get_extra_info("sockname")[:2]  # the port, if 0 was asked
        log.info("ipxnet: listening on %s:%d (DOSBox: ipxnet connect %s %d)",
                 *self.listen, *self.listen)
        self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            ip = self.local_ip()
            if ip is not None and ip != self._overlay_ip:
                await self._bind_overlay(ip)
            await asyncio.sleep(WATCH_SLOW if self._overlay is not None else WATCH_FAST)

    async def _bind_overlay(self, ip: str) -> None:
        if self._overlay is not None:
            self._overlay.close()
            self._overlay = None
        self.bridge.set_local_ip(socket.inet_aton(ip))
        self._overlay_ip = ip
        try:
            self._overlay, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Datagrams(self._from_node), local_addr=(ip, self.bridge_port))
            self.error = None
            log.info("ipxnet: bridge socket on %s:%d", ip, self.bridge_port)
        except OSError as e:
            self.error = f"cannot bind the bridge socket {ip}:{self.bridge_port}: {e.strerror}"
            log.error("ipxnet: %s; clients here only reach each other", self.error)

    # ------------------------------------------------------------ datagrams
    def _from_client(self, data: bytes, addr: Any) -> None:
        self._apply(self.bridge.from_client(data, (addr[0], addr[1]), self.clock()))

    def _from_node(self, data: bytes, addr: Any) -> None:
        try:
            src = socket.inet_aton(addr[0])
        except OSError:
            return
        self._apply(self.bridge.from_node(data, src, self.clock()))

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, ToClient):
                if self._clients is not None:
                    self._clients.sendto(a.data, a.addr)
            elif isinstance(a, ToNode):
                if self._overlay is None:
                    self.bridge.counters.drop("no_bridge_socket")
                    continue
                self._overlay.sendto(a.data, (socket.inet_ntoa(a.ip), self.bridge_port))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for t in (self._clients, self._overlay):
            if t is not None:
                t.close()
        self._clients = self._overlay = None

    def status(self, peer_name: Callable[[bytes], str]) -> dict[str, Any]:
        out = self.bridge.status(self.clock(), peer_name)
        out["listen"] = f"{self.listen[0]}:{self.listen[1]}"
        out["bridge"] = (f"{self._overlay_ip}:{self.bridge_port}"
                         if self._overlay is not None else None)
        out["error"] = self.error
        return out
