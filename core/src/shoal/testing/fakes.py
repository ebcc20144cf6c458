"""In-memory fakes of the I/O edges, so whole nodes run in one process in tests.

* ``FakeTun``: a datagram socketpair. The engine polls and reads/writes one end
  exactly as it would a TUN descriptor; the test plays the operating system on
  the other end (``inject`` a packet "sent by an application", ``delivered``
  to read what the node wrote to the interface).
* ``FakeNetwork`` / ``FakeTransport``: datagrams between in-process transports,
  delivered on the event loop, with optional drop/duplicate/tamper hooks.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from shoal.transport import Endpoint, Receive


class FakeTun:
    def __init__(self, name: str = "fake0", mtu: int = 1420) -> None:
        self.name = name
        self.mtu = mtu
        self._node, self._os = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._node.setblocking(False)
        self._os.setblocking(False)

    def fileno(self) -> int:
        return self._node.fileno()

    def inject(self, packet: bytes) -> None:
        """An application on this host sends ``packet`` into the interface."""
        self._os.send(packet)

    def delivered(self) -> list[bytes]:
        """Packets the node wrote to the interface since the last call."""
        out = []
        while True:
            try:
                out.append(self._os.recv(65536))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self._node.close()
        self._os.close()


Filter = Callable[[bytes, Endpoint, Endpoint], list[bytes]]


class FakeNetwork:
    """Connects FakeTransports by address. ``filter(data, src, dst)`` returns what to deliver."""

    def __init__(self) -> None:
        self.transports: dict[Endpoint, FakeTransport] = {}
        self.filter: Filter | None = None
        self.sent: list[tuple[bytes, Endpoint, Endpoint]] = []

    def transport(self, addr: Endpoint) -> FakeTransport:
        t = FakeTransport(self, addr)
        self.transports[addr] = t
        return t

    def deliver(self, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        self.sent.append((data, src, dst))
        out = [data] if self.filter is None else self.filter(data, src, dst)
        t = self.transports.get(dst)
        if t is None or t.loop is None or t.receive is None:
            return
        for d in out:
            t.loop.call_soon(t.receive, d, src)


class FakeTransport:
    name = "fake"

    def __init__(self, net: FakeNetwork, addr: Endpoint) -> None:
        self.net = net
        self.addr = addr
        self.loop: asyncio.AbstractEventLoop | None = None
        self.receive: Receive | None = None
        self.closed = False

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self.loop = loop
        self.receive = receive

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        if self.closed:
            raise OSError("closed")
        self.net.deliver(bytes(data), self.addr, endpoint)

    def local_endpoints(self) -> list[str]:
        return [f"{self.addr[0]}:{self.addr[1]}"]

    def close(self) -> None:
        self.closed = True
        self.net.transports.pop(self.addr, None)


def ipv4_packet(src: str, dst: str, payload: bytes = b"x" * 32, proto: int = 17) -> bytes:
    """A minimal IPv4 packet (no checksum) for routing tests."""
    import ipaddress

    total = 20 + len(payload)
    hdr = bytes([0x45, 0]) + total.to_bytes(2, "big") + b"\x00\x00\x00\x00" + bytes([64, proto]) \
        + b"\x00\x00" + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    return hdr + payload


