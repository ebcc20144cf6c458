"""The relay service: UDP and TCP front ends around ``RelayCore``.

Runs inside the coordination server (``plugins = ["relay"]``) or alone
(``shoal relay run``); both read the same secret, so grants issued by the
server are honoured by either.

Other front ends (the ``wss`` plugin's WebSocket listener) attach to the same
core with ``attach(kind, send)``: they feed messages in with ``receive(data,
(kind, conn))`` and the service hands messages for ``(kind, conn)`` back to
their ``send(conn, msg)``. So a node on any front end reaches nodes on any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from shoal.config import parse_endpoint
from shoal.errors import ShoalError

from shoal_transport_relay.protocol import RelayCore

log = logging.getLogger(__name__)

SECRET_FILE = "relay.secret"


def load_secret(path: str | Path, create: bool) -> bytes:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        if not create:
            raise ShoalError(f"{p}: relay secret not found (it is created by the coordination "
                             "server's relay plugin; copy it to the standalone relay)") from None
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        return p.read_bytes()
    if p.stat().st_mode & 0o077:
        raise ShoalError(f"{p}: relay secret is readable by group or others; run 'chmod 600 {p}'")
    if len(data) != 32:
        raise ShoalError(f"{p}: relay secret must be 32 bytes")
    return data


#: send(connection, message) of a front end: must not block (drop when full).
FrontEndSend = Callable[[Any, bytes], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, service: RelayService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.service.receive(data, ("udp", addr))

    def sendto(self, addr: tuple[str, int], msg: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(msg, addr)


def _tcp_send(writer: asyncio.StreamWriter, msg: bytes) -> None:
    if not writer.is_closing():
        writer.write(len(msg).to_bytes(2, "big") + msg)


class RelayService:
    def __init__(self, secret: bytes, listen_udp: str | None, listen_tcp: str | None,
                 rate_bytes_per_s: float = 12_500_000.0) -> None:
        self.core = RelayCore(secret, rate_bytes_per_s=rate_bytes_per_s)
        self.listen_udp = listen_udp
        self.listen_tcp = listen_tcp
        self._udp = _Udp(self)
        self._front_ends: dict[str, FrontEndSend] = {"udp": self._udp.sendto, "tcp": _tcp_send}

    def attach(self, kind: str, send: FrontEndSend) -> None:
        """Add a front end: messages for addresses ``(kind, conn)`` go to ``send(conn, msg)``."""
        if kind in self._front_ends:
            raise ValueError(f"relay front end {kind!r} is already attached")
        self._front_ends[kind] = send

    def receive(self, data: bytes, addr: tuple[str, Hashable]) -> None:
        """One message from a front end's connection ``addr = (kind, conn)``."""
        for dst, msg in self.core.handle(data, addr, time.monotonic(), time.time()):
            self.send(dst, msg)

    def forget(self, addr: tuple[str, Hashable]) -> None:
        """A front end's connection closed: drop its registration."""
        self.core.forget(addr)

    def send(self, dst: object, msg: bytes) -> None:
        kind, where = dst  # type: ignore[misc]
        send = self._front_ends.get(kind)
        if send is not None:
            send(where, msg)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        closers = []
        if self.listen_udp:
            t, _ = await loop.create_datagram_endpoint(
                lambda: self._udp, local_addr=parse_endpoint(self.listen_udp),
                family=socket.AF_INET)
            closers.append(t.close)
        if self.listen_tcp:
            host, port = parse_endpoint(self.listen_tcp)
            srv = await asyncio.start_server(self._tcp_client, host, port, reuse_address=True)
            closers.append(srv.close)
        log.info("relay listening on udp %s, tcp %s", self.listen_udp or "-",
                 self.listen_tcp or "-")
        try:
            while True:
                await asyncio.sleep(10)
                self.core.expire(time.monotonic())
        finally:
            for c in closers:
                c()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                          ) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        me = ("tcp", writer)
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(2), "big")
                self.receive(await reader.readexactly(n), me)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.core.forget(me)
            writer.close()
