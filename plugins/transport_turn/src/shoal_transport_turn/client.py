"""TURN client: one allocation on one server, over UDP, TCP or TLS (asyncio shell).

The protocol is in ``allocation`` (requests, authentication, lifetimes) and
``framing`` (ChannelData, the TCP/TLS stream); transactions are
``shoal.stun_client.StunClient``. This module owns the connection to the
server, the timers that keep the allocation, its permissions and channels
alive, and the two data paths:

* out: ``send(data, peer)`` -- ChannelData when a channel is bound to the
  peer, else a Send indication (the peer's IP needs a permission, which
  ``permit`` installs); never blocks: a full TCP buffer raises ``OSError``.
* in: Data indications and ChannelData become ``on_data(payload, peer)``.

The UDP endpoint towards the server is a plain asyncio datagram endpoint
(see the README for why asyncio-dgram is not used). Bounds: at most
``MAX_PEERS`` permissions and channels; TCP write buffer ``MAX_BUFFER``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal import stun
from shoal.stun_client import StunClient

from shoal_transport_turn import framing
from shoal_transport_turn.allocation import (
    CHANNEL_REFRESH,
    PERMISSION_REFRESH,
    Allocation,
    Failure,
    Retry,
    State,
    data_indication,
    send_indication,
)
from shoal_transport_turn.credentials import Credentials

log = logging.getLogger(__name__)

Addr = tuple[str, int]
MAX_PEERS = 256
MAX_BUFFER = 1 << 20
UDP_TRIES, UDP_TIMEOUT = 4, 0.5
STREAM_TIMEOUT = 3.0


@dataclass(frozen=True)
class ServerSpec:
    """``turn:HOST:PORT[?transport=udp|tcp]`` or ``turns:HOST:PORT`` (TLS over TCP)."""

    host: str
    port: int
    transport: str = "udp"     # udp | tcp | tls

    @classmethod
    def parse(cls, url: str) -> ServerSpec:
        scheme, sep, rest = url.partition(":")
        if not sep or scheme not in ("turn", "turns"):
            raise ValueError(f"{url!r}: expected turn:HOST:PORT[?transport=udp|tcp] "
                             "or turns:HOST:PORT")
        rest, _, query = rest.partition("?")
        host, sep, port_s = rest.rpartition(":")
        if not sep or "]" in port_s:
            host, port_s = rest, ("5349" if scheme == "turns" else "3478")
        host = host.strip("[]")
        if not host:
            raise ValueError(f"{url!r}: no host")
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise ValueError(f"{url!r}: port {port_s!r} is not in 1..65535")
        transport = "tls" if scheme == "turns" else "udp"
        if query:
            key, _, value = query.partition("=")
            if key != "transport" or value not in ("udp", "tcp"):
                raise ValueError(f"{url!r}: only ?transport=udp or ?transport=tcp is known")
            if scheme == "turn":
                transport = value
        return cls(host, int(port_s), transport)

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.transport})"


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, client: TurnClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._on_message_bytes(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: the next transaction times out and says so


class TurnClient:
    def __init__(self, spec: ServerSpec, creds: Callable[[], Credentials],
                 on_data: Callable[[bytes, Addr], None],
                 clock: Callable[[], float] = time.monotonic,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.spec = spec
        self._creds = creds
        self.on_data = on_data
        self.clock = clock
        self.tls_context = tls_context
        self.alloc = Allocation(creds())
        self.stun = StunClient(self._send_raw, clock)
        self.server: Addr | None = None
        self.rtt: float | None = None
        self.error: str | None = None
        self.malformed = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._permissions: dict[str, float] = {}            # ip -> refresh at
        self._channels: dict[Addr, tuple[int, float]] = {}  # peer -> (channel, refresh at)
        self._by_channel: dict[int, Addr] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self._next_channel = framing.CHANNEL_MIN

    # ------------------------------------------------------------ status
    @property
    def ready(self) -> bool:
        return self.alloc.state is State.READY

    @property
    def relayed(self) -> Addr | None:
        return self.alloc.relayed if self.ready else None

    def describe(self) -> dict[str, Any]:
        r = self.alloc.relayed
        return {"server": f"{self.spec.host}:{self.spec.port}", "transport": self.spec.transport,
                "state": self.alloc.state.value, "username": self.alloc.creds.username,
                "relayed": f"{r[0]}:{r[1]}" if r and self.ready else None,
                "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 2),
                "permissions": len(self._permissions), "channels": len(self._channels),
                "error": self.error}

    # ------------------------------------------------------------ connection
    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.spec.host, self.spec.port, family=socket.AF_INET,
                                       type=socket.SOCK_DGRAM if self.spec.transport == "udp"
                                       else socket.SOCK_STREAM)
        server = (str(infos[0][4][0]), int(infos[0][4][1]))
        self.server = server
        if self.spec.transport == "udp":
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), remote_addr=server, family=socket.AF_INET)
        else:
            tls = None
            if self.spec.transport == "tls":
                tls = self.tls_context or ssl.create_default_context()
            reader, self._writer = await asyncio.wait_for(asyncio.open_connection(
                server[0], server[1], ssl=tls,
                server_hostname=self.spec.host if tls else None), STREAM_TIMEOUT)
            self._reader_task = loop.create_task(self._read_stream(reader))

    async def _read_stream(self, reader: asyncio.StreamReader) -> None:
        deframer = framing.StreamDeframer()
        try:
            while data := await reader.read(65536):
                for msg in deframer.feed(data):
                    assert self.server is not None
                    self._on_message_bytes(msg, self.server)
        except (OSError, framing.FramingError) as e:
            log.info("turn %s: connection failed: %s", self.spec, e)
        self._lost("the server closed the connection")

    def _lost(self, why: str) -> None:
        if self.alloc.state is State.READY:
            self.error = why
            self.alloc.fail(Failure(None, why))

    def _send_raw(self, data: bytes, addr: Addr) -> None:
        if self._udp is not None:
            self._udp.sendto(data)
        elif self._writer is not None:
            if self._writer.transport.get_write_buffer_size() > MAX_BUFFER:
                raise OSError("TURN connection buffer full")
            self._writer.write(data)
        else:
            raise OSError("not connected to the TURN server")

    def _on_message_bytes(self, data: bytes, src: Addr) -> None:
        if framing.is_channel_data(data):
            try:
                channel, payload = framing.decode_channel_data(data)
            except framing.FramingError:
                self.malformed += 1
                return
            peer = self._by_channel.get(channel)
            if peer is not None:
                self.on_data(payload, peer)
            return
        try:
            msg = stun.decode(data)
        except stun.StunError:
            self.malformed += 1
            return
        if msg.message_class == stun.Class.INDICATION:
            ind = data_indication(msg)
            if ind is not None:
                self.on_data(ind[1], ind[0])
            return
        self.stun.on_message(msg, src)

    # ------------------------------------------------------------ transactions
    async def _transact(self, build: Callable[[], stun.Message]) -> stun.Message:
        """Send a request until it succeeds; raise ``TurnFailed`` with one clear line."""
        assert self.server is not None
        udp = self.spec.transport == "udp"
        for _ in range(4):
            msg = build()
            key = self.alloc.sign(msg)
            resp = await self.stun.request(msg, self.server, UDP_TRIES if udp else 1,
                                           UDP_TIMEOUT if udp else STREAM_TIMEOUT, key)
            if resp is None:
                raise TurnFailed(Failure(None, "unreachable: no answer"))
            if resp.message.message_class == stun.Class.RESPONSE:
                if not self.alloc.verify(resp.message, key is not None):
                    raise TurnFailed(Failure(None, "response without valid MESSAGE-INTEGRITY"))
                self.rtt = resp.rtt
                return resp.message
            outcome = self.alloc.on_error(resp.message, key is not None)
            if not isinstance(outcome, Retry):
                raise TurnFailed(outcome)
        raise TurnFailed(Failure(None, "authentication did not converge"))

    async def allocate(self) -> Addr:
        try:
            resp = await self._transact(self.alloc.allocate_request)
            relayed = self.alloc.on_allocated(resp, self.clock())
        except TurnFailed as e:
            self.error = str(e.failure)
            self.alloc.fail(e.failure)
            raise
        except stun.StunError as e:
            self.error = str(e)
            self.alloc.fail(Failure(None, str(e)))
            raise TurnFailed(Failure(None, str(e))) from None
        self.error = None
        log.info("turn %s: relayed address %s:%d (%s, rtt %.1f ms)", self.spec, relayed[0],
                 relayed[1], self.alloc.creds, (self.rtt or 0) * 1000)
        return relayed

    async def permit(self, ip: str) -> bool:
        """CreatePermission for ``ip`` (refreshed by ``maintain``)."""
        if ip not in self._permissions and len(self._permissions) >= MAX_PEERS:
            return False
        try:
            await self._transact(lambda: self.alloc.permission_request([ip]))
        except TurnFailed as e:
            log.info("turn %s: permission for %s refused: %s", self.spec, ip, e.failure)
            return False
        self._permissions[ip] = self.clock() + PERMISSION_REFRESH
        return True

    async def bind(self, peer: Addr) -> int | None:
        """ChannelBind a channel to ``peer`` (also installs its permission)."""
        if peer in self._channels:
            return self._channels[peer][0]
        if len(self._channels) >= MAX_PEERS or self._next_channel > framing.CHANNEL_MAX:
            return None
        channel = self._next_channel
        self._next_channel += 1
        try:
            await self._transact(lambda: self.alloc.channel_bind_request(channel, peer))
        except TurnFailed as e:
            log.info("turn %s: channel for %s:%d refused: %s", self.spec, peer[0], peer[1],
                     e.failure)
            return None
        now = self.clock()
        self._channels[peer] = (channel, now + CHANNEL_REFRESH)
        self._by_channel[channel] = peer
        self._permissions.setdefault(peer[0], now + PERMISSION_REFRESH)
        return channel

    def background(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)

    async def maintain(self) -> None:
        """Refresh the allocation, permissions and channels before they expire."""
        while self.ready:
            await asyncio.sleep(1.0 + random.random())
            now = self.clock()
            try:
                if now >= self.alloc.refresh_at:
                    resp = await self._transact(self.alloc.refresh_request)
                    self.alloc.on_refreshed(resp, self.clock())
                for ip, at in list(self._permissions.items()):
                    if now >= at:
                        await self._transact(functools.partial(self.alloc.permission_request,
                                                               [ip]))
                        self._permissions[ip] = self.clock() + PERMISSION_REFRESH
                for peer, (ch, at) in list(self._channels.items()):
                    if now >= at:
                        await self._transact(functools.partial(self.alloc.channel_bind_request,
                                                               ch, peer))
                        self._channels[peer] = (ch, self.clock() + CHANNEL_REFRESH)
            except TurnFailed as e:
                self.error = f"refresh failed: {e.failure}"
                self.alloc.fail(e.failure)

    # ------------------------------------------------------------ data
    def send(self, data: bytes, peer: Addr) -> None:
        """One datagram to ``peer`` through the relay; raises OSError when not possible."""
        if not self.ready:
            raise OSError("TURN allocation not ready")
        ch = self._channels.get(peer)
        stream = self._udp is None
        if ch is not None:
            self._send_raw(framing.encode_channel_data(ch[0], data, stream), peer)
        else:
            self._send_raw(stun.encode(send_indication(peer, data), fingerprint=False), peer)

    def has_permission(self, ip: str) -> bool:
        return ip in self._permissions

    async def close(self) -> None:
        if self.ready and self.server is not None:
            try:  # release the allocation at once (RFC 8656 §7: Refresh with LIFETIME 0)
                msg = self.alloc.refresh_request(0)
                key = self.alloc.sign(msg)
                self._send_raw(stun.encode(msg, key), self.server)
            except OSError:
                pass
        self.close_now()

    def close_now(self) -> None:
        self.alloc.close()
        for t in list(self._pending):
            t.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()


class TurnFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure
