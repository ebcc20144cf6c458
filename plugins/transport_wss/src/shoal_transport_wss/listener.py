"""The server side: a WSS front end of the relay, beside its UDP and TCP listeners.

Each WebSocket connection is one relay address ``("wss", connection)`` in the
relay's core, so its ALLOC is checked against the coordination server's
grants and its SEND is forwarded exactly as over UDP or TCP, to nodes on any
front end. Bounds: at most ``max_connections`` connections; one that has not
registered within ``REGISTER_WITHIN`` seconds is closed; messages over
``MAX_MESSAGE`` close the connection (the library enforces it).

Only ``path`` (``/shoal/relay``) is served; other requests get 404, so the
listener can sit behind a web front end that routes by path.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from shoal.config import parse_endpoint

from shoal_transport_relay.service import RelayService
from shoal_transport_wss.framing import MAX_MESSAGE, FrameCounters, to_relay
from shoal_transport_wss.nonblocking import write_now
from shoal_transport_wss.settings import DEFAULT_PATH

log = logging.getLogger(__name__)

REGISTER_WITHIN = 10.0
KIND = "wss"


@dataclass
class ListenerCounters:
    connections: int = 0
    rejected_full: int = 0
    rejected_path: int = 0
    unregistered_closed: int = 0
    send_dropped: int = 0


class WssListener:
    def __init__(self, listen: str, ssl_context: Any, path: str = DEFAULT_PATH,
                 max_connections: int = 4096) -> None:
        self.listen = listen
        self.ssl_context = ssl_context
        self.path = path
        self.max_connections = max_connections
        self.counters = ListenerCounters()
        self.dropped = FrameCounters()
        self.service: RelayService | None = None
        self.ready = asyncio.Event()
        self._conns: set[ServerConnection] = set()

    async def run(self, service: RelayService) -> None:
        """Serve until cancelled, as a front end of ``service``."""
        self.service = service
        service.attach(KIND, self._send)
        host, port = parse_endpoint(self.listen)
        async with serve(self._handler, host, port, ssl=self.ssl_context,
                         process_request=self._check_request, compression=None,
                         max_size=MAX_MESSAGE, ping_interval=20, ping_timeout=20,
                         open_timeout=10, close_timeout=1, server_header=None):
            log.info("relay listening on wss %s%s", self.listen, self.path)
            self.ready.set()
            await asyncio.Future()

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path != self.path:
            self.counters.rejected_path += 1
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if len(self._conns) >= self.max_connections:
            self.counters.rejected_full += 1
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "relay full\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert self.service is not None
        service = self.service
        me = (KIND, ws)
        self._conns.add(ws)
        self.counters.connections += 1
        watchdog = asyncio.get_running_loop().call_later(REGISTER_WITHIN, self._unregistered, ws)
        try:
            async for message in ws:
                data = to_relay(message, self.dropped)
                if data is not None:
                    service.receive(data, me)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            service.forget(me)
            self._conns.discard(ws)

    def _unregistered(self, ws: ServerConnection) -> None:
        if self.service is not None and (KIND, ws) not in self.service.core.by_addr:
            self.counters.unregistered_closed += 1
            ws.transport.abort()

    def _send(self, ws: ServerConnection, message: bytes) -> None:
        try:
            write_now(ws, message)
        except OSError:
            self.counters.send_dropped += 1
