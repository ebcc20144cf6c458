"""The relay service: UDP and TCP front ends around ``RelayCore``.

Runs inside the coordination server (``plugins = ["relay"]``) or alone
(``shoal relay run``); both read the same secret, so grants issued by the
server are honoured by either.

Other front ends (the ``wss`` plugin's WebSocket listener) attach to the same
core with ``attach(kind, send)``: they feed messages in with ``receive(data,
(kind, conn))`` and the service hands messages for ``(kind, conn)`` back to
their ``send(conn, msg)``. So a node on any front end reaches nodes on any other.
Connection-oriented front ends (TCP, WSS) are routable by their handshake; UDP
source addresses prove themselves with the relay's return-routability cookie.

Bounds (a relay faces the whole internet): TCP connections are capped in
total and per source address (the total defaults to a quarter of the
process's descriptors, so an in-server relay leaves the control port room);
a connection must register within ``TCP_FIRST_MESSAGE`` seconds, send each
frame within ``TCP_FRAME_TIMEOUT`` of its length, and is closed after
``TCP_IDLE`` seconds of silence; a reader that does not keep up loses
packets, not the relay's memory, and the memory of a flood's connections is
given back once it is over (``shoal.memory``). Repeated errors are logged once per interval
with a count.
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
from shoal.conn_limits import ConnectionLimits, descriptor_budget, raise_nofile_limit
from shoal.errors import ShoalError
from shoal.log_throttle import LogThrottle
from shoal.memory import PeakWatch, give_back

from shoal_transport_relay.protocol import REGISTRATION_TTL, RelayCore

log = logging.getLogger(__name__)

SECRET_FILE = "relay.secret"
TCP_FIRST_MESSAGE = 10.0
TCP_FRAME_TIMEOUT = 10.0
TCP_IDLE = REGISTRATION_TTL + 5.0
TCP_WRITE_BUFFER = 1 << 20       # bytes queued for one slow reader before packets are dropped
TCP_PER_SOURCE = 64


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
    except IsADirectoryError:
        raise ShoalError(f"{p}: relay secret is a directory; remove it or point "
                         "secret_file at the 32-byte secret") from None
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

    def error_received(self, exc: Exception) -> None:
        self.service.throttle.log(logging.DEBUG, f"udp {type(exc).__name__}",
                                  "relay udp: %s", exc)


class RelayService:
    def __init__(self, secret: bytes, listen_udp: str | None, listen_tcp: str | None,
                 rate_bytes_per_s: float = 12_500_000.0, *, max_tcp: int = 0,
                 max_tcp_per_source: int = TCP_PER_SOURCE, max_registrations: int = 65_536,
                 grant_lifetime: int = 600) -> None:
        self.core = RelayCore(secret, rate_bytes_per_s=rate_bytes_per_s,
                              max_registrations=max_registrations,
                              grant_lifetime=grant_lifetime)
        self.listen_udp = listen_udp
        self.listen_tcp = listen_tcp
        self._max_tcp = max_tcp
        self.tcp_limits = ConnectionLimits(max_tcp or 1, max_tcp_per_source)
        self.throttle = LogThrottle(log)
        self.dropped_slow = 0
        self.timeouts = 0
        self._tcp_peak = PeakWatch()
        self._udp = _Udp(self)
        self._front_ends: dict[str, FrontEndSend] = {"udp": self._udp.sendto,
                                                     "tcp": self._tcp_send}

    def _tcp_send(self, writer: asyncio.StreamWriter, msg: bytes) -> None:
        if writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > TCP_WRITE_BUFFER:
            self.dropped_slow += 1
            return
        writer.write(len(msg).to_bytes(2, "big") + msg)

    def attach(self, kind: str, send: FrontEndSend) -> None:
        """Add a front end: messages for addresses ``(kind, conn)`` go to ``send(conn, msg)``."""
        if kind in self._front_ends:
            raise ValueError(f"relay front end {kind!r} is already attached")
        self._front_ends[kind] = send

    def receive(self, data: bytes, addr: tuple[str, Hashable]) -> None:
        """One message from a front end's connection ``addr = (kind, conn)``; every
        front end but UDP is a connection, routable by its handshake."""
        for dst, msg in self.core.handle(data, addr, time.monotonic(), time.time(),
                                         routable=addr[0] != "udp"):
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
        raise_nofile_limit()
        self.tcp_limits.max_total = self._max_tcp or min(16_384, descriptor_budget(0.25))
        closers = []
        if self.listen_udp:
            t, _ = await loop.create_datagram_endpoint(
                lambda: self._udp, local_addr=parse_endpoint(self.listen_udp),
                family=socket.AF_INET)
            closers.append(t.close)
        if self.listen_tcp:
            host, port = parse_endpoint(self.listen_tcp)
            srv = await asyncio.start_server(self._tcp_client, host, port, reuse_address=True,
                                             backlog=1024)
            closers.append(srv.close)
        log.info("relay listening on udp %s, tcp %s (at most %d TCP connections, %d per source)",
                 self.listen_udp or "-", self.listen_tcp or "-", self.tcp_limits.max_total,
                 self.tcp_limits.max_per_source)
        try:
            while True:
                await asyncio.sleep(10)
                self.core.expire(time.monotonic(), time.time())
                if self._tcp_peak.fallen(self.tcp_limits.total):
                    give_back()   # a flood of connections is over
        finally:
            for c in closers:
                c()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                          ) -> None:
        peer = writer.get_extra_info("peername")
        source = peer[0] if peer else "?"
        if not self.tcp_limits.try_open(source):
            self.throttle.log(logging.WARNING, "tcp cap",
                              "relay: refusing TCP connections (%d open, at most %d per source)",
                              self.tcp_limits.total, self.tcp_limits.max_per_source)
            writer.transport.abort()
            return
        self._tcp_peak.see(self.tcp_limits.total)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        me = ("tcp", writer)
        register_by = time.monotonic() + TCP_FIRST_MESSAGE
        try:
            while True:
                # Until it registers a connection has TCP_FIRST_MESSAGE in all; then it
                # may idle up to TCP_IDLE between frames (nodes refresh every 15 s).
                if self.core.by_addr.get(me) is not None:
                    wait = TCP_IDLE
                else:
                    wait = register_by - time.monotonic()
                    if wait <= 0:
                        raise TimeoutError
                n = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), wait), "big")
                self.receive(await asyncio.wait_for(reader.readexactly(n), TCP_FRAME_TIMEOUT),
                             me)
        except (asyncio.TimeoutError, TimeoutError):
            self.timeouts += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except OSError as e:
            self.throttle.log(logging.WARNING, f"tcp {type(e).__name__}",
                              "relay: TCP connection from %s: %s", source, e)
        finally:
            self.tcp_limits.close(source)
            self.core.forget(me)
            writer.transport.abort()

    def status(self) -> dict[str, object]:
        return {"registrations": len(self.core.by_id), "tcp_connections": self.tcp_limits.total,
                "tcp_refused": self.tcp_limits.refused_total + self.tcp_limits.refused_source,
                "timeouts": self.timeouts, "dropped_slow": self.dropped_slow,
                **self.core.counters.__dict__}
