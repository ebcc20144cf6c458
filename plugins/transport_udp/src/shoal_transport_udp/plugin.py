"""Entry point ``udp``: the node's one UDP socket as a Shoal transport.

Listed first among direct transports it is the node's main transport: the one
handshakes go out on, traversal probes it and its port is announced to peers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shoal.errors import ShoalError
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.transport import Delivery, Endpoint, PathKind, Readiness, Receive, Transport

log = logging.getLogger(__name__)

RECV_BATCH = 512


class UdpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(41641, ge=0, le=65535)
    listen: str = "0.0.0.0"
    socket_buffer: int = Field(4 << 20, ge=65536, le=256 << 20)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if ipaddress.ip_address(v).version != 4:
            raise ValueError("must be an IPv4 address (IPv6 sockets are not supported yet)")
        return v


class UdpTransport(Transport):
    """Non-blocking UDP socket drained in batches from the event loop."""

    name = "udp"
    kind = PathKind.DIRECT
    delivery = Delivery.DATAGRAM
    overhead = 28  # IPv4 + UDP headers

    def __init__(self, settings: UdpSettings,
                 host_addresses: Callable[[], list[str]] = list) -> None:
        self.settings = settings
        self.host_addresses = host_addresses
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receive: Receive | None = None

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
            try:  # SO_RCVBUFFORCE / SO_SNDBUFFORCE lift the sysctl cap when root
                s.setsockopt(socket.SOL_SOCKET, force, self.settings.socket_buffer)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, opt, self.settings.socket_buffer)
        try:
            s.bind((self.settings.listen, self.settings.port))
        except OSError as e:
            s.close()
            raise ShoalError(
                f"cannot bind UDP {self.settings.listen}:{self.settings.port}: {e.strerror}; "
                "set [plugin.udp] port to a free port (0 = any)") from None
        s.setblocking(False)
        self.sock = s
        self._receive = receive
        self._loop = loop
        # The data path calls the socket's own method: no wrapper per packet.
        self.send = s.sendto  # type: ignore[method-assign]
        loop.add_reader(s.fileno(), self._drain)
        log.info("udp transport listening on %s:%d", *s.getsockname())
        self.set_readiness(Readiness.READY, "socket bound")

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        raise OSError("udp transport not started")

    def _drain(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recv = sock.recvfrom
        receive = self._receive
        assert receive is not None
        for _ in range(RECV_BATCH):
            try:
                data, addr = recv(65535)
            except BlockingIOError:
                return
            except OSError:  # e.g. ICMP errors reported on the socket
                continue
            receive(data, addr)

    def local_endpoints(self) -> list[str]:
        if self.sock is None:
            return []
        host, port = self.sock.getsockname()[:2]
        return [f"{host}:{port}"]

    def candidates(self) -> list[str]:
        """This machine's addresses with the bound port (used when udp is not the main
        transport; as the main one, the node and traversal announce it themselves)."""
        if self.sock is None:
            return []
        port = self.sock.getsockname()[1]
        host = self.settings.listen
        hosts = self.host_addresses() if host == "0.0.0.0" else [host]
        return [f"{h}:{port}" for h in hosts]

    def close(self) -> None:
        if self.sock is not None:
            if self._loop is not None:
                try:
                    self._loop.remove_reader(self.sock.fileno())
                except (ValueError, OSError):
                    pass
            self.sock.close()
            self.sock = None


class UdpPlugin(NodePlugin):
    def __init__(self, node: NodeHandle) -> None:
        self.transport = UdpTransport(node.settings(UdpSettings), node.host_addresses)

    def transports(self) -> list[Transport]:
        return [self.transport]


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("udp", UdpSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> UdpPlugin:
    return UdpPlugin(node)
