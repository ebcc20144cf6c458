"""A small HTTP/1.1 server for the metrics endpoint and the admin page.

Parsing and framing are h11's (a maintained, sans-IO HTTP/1.1 library, the
model for Shoal's own protocol cores); this module is only the asyncio shell
around it. Why not a web framework (aiohttp): both endpoints serve a handful of
fixed paths, and they must run on the node's or the server's own event loop,
reading live state without locks; h11 alone keeps the dependency small and
the limits explicit.

Limits (every table and queue bounded): ``MAX_CONNECTIONS`` concurrent
connections (more are closed at once), ``MAX_HEADER_BYTES`` of request head,
``MAX_BODY_BYTES`` of request body, ``READ_TIMEOUT`` to deliver a request.
A handler may return a streaming response (Server-Sent Events); the stream
ends when the client goes away or the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import h11

from shoal.config import parse_endpoint
from shoal.errors import ShoalError

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
READ_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]          # lower-case names; repeated headers joined with ", "
    body: bytes
    peer: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def cookies(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.headers.get("cookie", "").replace(",", ";").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep:
                out.setdefault(k, v)
        return out


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: When set, the body is streamed from it (e.g. Server-Sent Events) and the
    #: connection closes when it ends.
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serve ``handler`` on ``listen`` ("ADDRESS:PORT")."""

    def __init__(self, listen: str, handler: Handler, name: str = "http") -> None:
        self.listen = listen
        self.handler = handler
        self.name = name
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        host, port = parse_endpoint(self.listen)
        try:
            self._server = await asyncio.start_server(self._connection, host, port,
                                                      reuse_address=True)
        except OSError as e:
            raise ShoalError(f"{self.name}: cannot listen on {self.listen}: "
                             f"{e.strerror or e}") from None
        log.info("%s listening on http://%s", self.name, self.listen)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    # ------------------------------------------------------------ connections
    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, f"{peer[0]}:{peer[1]}" if peer else "")
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, h11.ProtocolError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            req = await self._read_request(conn, reader, writer, peer)
            if req is None:
                return
            try:
                resp = await self.handler(req)
            except Exception:  # one bad request must not stop the server
                log.exception("%s: handler failed for %s %s", self.name, req.method, req.path)
                resp = Response(500, b"internal error\n")
            keep = await self._write(conn, writer, resp)
            if not keep or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, peer: str) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        timeout = IDLE_TIMEOUT
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                await self._reject(conn, writer, e.error_status_hint, str(e))
                return None
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), timeout)
                timeout = READ_TIMEOUT
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
                n = _content_length(event)
                if n is not None and n > MAX_BODY_BYTES:
                    await self._reject(conn, writer, 413, "request body too large")
                    return None
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    await self._reject(conn, writer, 413, "request body too large")
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _request(head, bytes(body), peer)
            else:  # ConnectionClosed, PAUSED
                return None

    async def _reject(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                      why: str) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(h11.LocalProtocolError):
            await self._write(conn, writer, Response(status, (why + "\n").encode()),
                              close=True)

    async def _write(self, conn: h11.Connection, writer: asyncio.StreamWriter, resp: Response,
                     close: bool = False) -> bool:
        headers = [("content-type", resp.content_type), *resp.headers]
        if resp.stream is None:
            headers.append(("content-length", str(len(resp.body))))
        if close or resp.stream is not None:
            headers.append(("connection", "close"))
        writer.write(conn.send(h11.Response(status_code=resp.status, headers=headers)) or b"")
        if resp.stream is None:
            if resp.body:
                writer.write(conn.send(h11.Data(data=resp.body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            return not close
        await writer.drain()
        try:
            async for chunk in resp.stream:
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        finally:
            aclose = getattr(resp.stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return False


def _content_length(head: h11.Request) -> int | None:
    for k, v in head.headers:
        if k == b"content-length":
            return int(v)
    return None


def _request(head: h11.Request, body: bytes, peer: str) -> Request:
    headers: dict[str, str] = {}
    for k, v in head.headers:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    target = urlsplit(head.target.decode("latin-1"))
    query = dict(parse_qsl(target.query, keep_blank_values=True))
    return Request(head.method.decode("ascii", "replace"), target.path or "/", query, headers,
                   body, peer)
