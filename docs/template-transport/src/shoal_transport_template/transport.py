"""The transport: one non-blocking UDP socket on ``[plugin.template] port``.

It implements ``shoal.transport.Transport`` and nothing else: ``start``,
``send``, ``close``, the endpoints it offers as candidates, and its readiness.
Endpoints are ``(host, port)`` tuples, so the default ``parse_endpoint``
(``"host:port"``) fits. A raw socket rather than an asyncio datagram transport:
``send`` must fail at once when the kernel buffer is full (asyncio would queue
without bound).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from shoal.errors import ShoalError
from shoal.transport import Delivery, Endpoint, PathKind, Readiness, Receive, Transport

RECV_BATCH = 256


class TemplateTransport(Transport):
    name = "template"            # shown as "transport" in `shoal status --json`
    kind = PathKind.DIRECT       # reaches the peer's own address
    delivery = Delivery.DATAGRAM
    overhead = 28                # IPv4 + UDP headers under each Shoal datagram

    def __init__(self, listen: str, port: int,
                 host_addresses: Callable[[], list[str]] = list) -> None:
        self.listen = listen
        self.port = port
        self.host_addresses = host_addresses
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receive: Receive | None = None

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((self.listen, self.port))
        except OSError as e:
            s.close()
            raise ShoalError(f"template transport: cannot bind UDP {self.listen}:{self.port}: "
                             f"{e.strerror}; set [plugin.template] port to a free port") from None
        s.setblocking(False)
        self.sock, self._loop, self._receive = s, loop, receive
        loop.add_reader(s.fileno(), self._drain)
        self.set_readiness(Readiness.READY, f"bound to UDP {self.listen}:{self.bound_port}")

    @property
    def bound_port(self) -> int:
        return self.sock.getsockname()[1] if self.sock is not None else 0

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        if self.sock is None:
            raise OSError("template transport not started")
        self.sock.sendto(data, endpoint)   # BlockingIOError (an OSError) when full

    def _drain(self) -> None:
        sock, receive = self.sock, self._receive
        if sock is None or receive is None:
            return
        for _ in range(RECV_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:     # e.g. an ICMP error reported on the socket
                continue
            receive(data, addr)

    def local_endpoints(self) -> list[str]:
        return [f"{self.listen}:{self.bound_port}"] if self.sock is not None else []

    def candidates(self) -> list[str]:
        if self.sock is None:
            return []
        hosts = self.host_addresses() if self.listen == "0.0.0.0" else [self.listen]
        return [f"{h}:{self.bound_port}" for h in hosts]

    def describe(self) -> dict[str, object]:
        return {"listen": self.local_endpoints()}

    def close(self) -> None:
        if self.sock is None:
            return
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.sock.fileno())
            except (ValueError, OSError):
                pass
        self.sock.close()
        self.sock = None
