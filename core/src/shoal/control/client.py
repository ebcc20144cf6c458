"""The node's side of the control plane: login, state sync, requests, reconnects.

Runs as one task beside the data plane. While the server is unreachable the
node keeps every tunnel it has and retries with jittered exponential backoff;
after a re-login the server's full peer snapshot is reconciled with the
tunnels that exist, so nothing that is still wanted is torn down.

Several servers (a cluster sharing one database): the node stays on the
server it is logged in to; when that one fails it moves to the next in the
list (wrapping around), each move after a short jittered delay, and backs off
exponentially only once a whole round of servers failed. A wrong server key is
fatal with one server (a configuration error); with several, that server is
skipped and the error logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shoal import __version__
from shoal.config import parse_endpoint
from shoal.control import messages as m
from shoal.control.channel import Channel, ChannelError, ServerKeyMismatch, State
from shoal.errors import ShoalError
from shoal.identity import StaticKeypair, encode_key

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0
SERVER_SILENCE = 15.0
BACKOFF_MIN = 0.5
BACKOFF_MAX = 5.0       # a restarted server sees its nodes back within seconds
REQUEST_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0

#: dial(host, port) -> an open TCP stream to the server (e.g. through an HTTP proxy)
Dialer = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class ControlState:
    online: bool = False
    virtual_ip: str | None = None
    prefix_len: int | None = None
    observed: str | None = None
    networks: list[m.NetworkSummary] = field(default_factory=list)
    last_error: str | None = None
    logins: int = 0


class LoginRefused(ChannelError):
    """The server refused the login (rate limit, registration closed, key needed)."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ControlClient:
    """Callbacks: ``on_welcome(welcome)``, ``on_peers(msg)`` (full or delta), ``on_login()``
    (a coroutine, run after each login), ``on_networks()`` (the network summaries changed)."""

    def __init__(self, keypair: StaticKeypair, name: str, server: str | list[tuple[str, bytes]],
                 server_key: bytes | None,
                 endpoints: Callable[[], list[str]], udp_port: Callable[[], int],
                 on_welcome: Callable[[m.Welcome], None],
                 on_peers: Callable[[m.Peers], None],
                 on_login: Callable[[], Any] | None = None,
                 on_networks: Callable[[], None] | None = None,
                 paths: Callable[[], list[m.PathReport]] | None = None,
                 on_signal: Callable[[m.Signal], None] | None = None,
                 dial: Dialer | None = None,

                 on_grants: Callable[[m.Grants], None] | None = None,
                 auth_key: str | None = None) -> None:
        self.keypair = keypair
        self.dial = dial
        self.name = name
        if isinstance(server, str):
            assert server_key is not None
            self.servers = [(server, server_key)]
        else:
            self.servers = list(server)
        self._current = 0
        self.endpoints = endpoints
        self.udp_port = udp_port
        self.on_welcome = on_welcome
        self.on_peers = on_peers
        self.on_login = on_login
        self.on_networks = on_networks
        self.paths = paths
        self.on_signal = on_signal
        self.on_grants = on_grants
        self.auth_key = auth_key
        self.state = ControlState()
        self._writer: asyncio.StreamWriter | None = None
        self._channel: Channel | None = None
        self._pending: dict[int, asyncio.Future[m.Result]] = {}
        self._next_id = 1
        self._retry_after: int | None = None
        self._last_logged: str | None = None

    @property
    def server(self) -> str:
        """The server this node is logged in to (or trying next)."""
        return self.servers[self._current][0]

    @property
    def server_key(self) -> bytes:
        return self.servers[self._current][1]

    # ------------------------------------------------------------ public
    async def request(self, op: str, args: dict[str, Any]) -> Any:
        if not self.state.online or self._channel is None or self._writer is None:
            raise ShoalError("not connected to the coordination server"
                             + (f" ({self.state.last_error})" if self.state.last_error else ""))
        rid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[m.Result] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._send(m.Request(id=rid, op=op, args=args))  # type: ignore[arg-type]
        try:
            res = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise ShoalError("the coordination server did not answer in time") from None
        finally:
            self._pending.pop(rid, None)
        if not res.ok:
            raise ShoalError(res.error or res.code or "request refused")
        return res.data

    def report(self, report: m.Report) -> None:
        """Send discovery findings (candidates, NAT) to the server; dropped while offline."""
        if self.state.online and self._channel is not None and self._writer is not None:
            try:
                self._send(report)
            except (ChannelError, ConnectionError):
                pass

    def signal(self, peer_key: bytes, kind: str, data: str) -> None:
        """Send a plugin's signal to a peer through the server; dropped while offline."""
        if self.state.online and self._channel is not None and self._writer is not None:
            try:
                self._send(m.SignalTo(to=encode_key(peer_key), kind=kind, data=data))
            except (ChannelError, ConnectionError):
                pass

    async def bye(self) -> None:
        if self.state.online and self._writer is not None:
            try:
                self._send(m.Bye())
                await asyncio.wait_for(self._writer.drain(), 1.0)
            except (ConnectionError, asyncio.TimeoutError, TimeoutError, ChannelError):
                pass

    # ------------------------------------------------------------ loop
    async def run(self) -> None:
        delay = BACKOFF_MIN
        failed_in_round = 0
        while True:
            logins = self.state.logins
            try:
                await self._session()
            except ServerKeyMismatch as e:
                # A wrong server key is a configuration error, not a network one.
                self.state.last_error = str(e)
                if len(self.servers) == 1:
                    raise ShoalError(str(e)) from None
                log.error("coordination server %s: %s", self.server, e)
            except (OSError, ChannelError, m.BadMessage, asyncio.TimeoutError,
                    TimeoutError, asyncio.IncompleteReadError) as e:
                msg = str(e) or type(e).__name__
                if isinstance(e, ConnectionRefusedError):
                    msg = "connection refused"
                same = msg
                if isinstance(e, LoginRefused):
                    self._retry_after = e.retry_after
                    if e.retry_after is not None:  # one line per refusal, not per countdown
                        same = msg.rpartition(";")[0] or msg
                if self._last_logged != same:
                    log.warning("coordination server %s: %s", self.server, msg)
                    self._last_logged = same
                self.state.last_error = msg
            finally:
                self._disconnected()
            if self.state.logins != logins:  # that session logged in: start over
                delay, failed_in_round = BACKOFF_MIN, 0
            else:
                failed_in_round += 1
            if len(self.servers) > 1:
                self._current = (self._current + 1) % len(self.servers)
                if failed_in_round < len(self.servers):
                    # Move to the next server at once (jittered, so a dead server's
                    # nodes do not all arrive at the same instant).
                    await asyncio.sleep(BACKOFF_MIN * random.random())
                    continue
                failed_in_round = 0
            wait = delay * (0.5 + random.random())
            delay = min(BACKOFF_MAX, delay * 2)
            if self._retry_after:  # the server said when to come back
                wait = max(wait, self._retry_after + random.random())
                self._retry_after = None
            await asyncio.sleep(wait)

    def _disconnected(self) -> None:
        self.state.online = False
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._channel = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ShoalError("lost the connection to the coordination server"))
        self._pending.clear()

    def _send(self, msg: m.Msg) -> None:
        assert self._channel is not None and self._writer is not None
        self._channel.send_message(m.encode(msg))
        self._writer.write(self._channel.data_to_send())

    async def _session(self) -> None:
        host, port = parse_endpoint(self.server)
        reader, writer = await asyncio.wait_for(
            self.dial(host, port) if self.dial else asyncio.open_connection(host, port),
            CONNECT_TIMEOUT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writer = writer
        ch = Channel(self.keypair, initiator=True, expected_remote=self.server_key)
        self._channel = ch
        writer.write(ch.data_to_send())
        hello_sent = False
        heartbeat = None
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), SERVER_SILENCE)
                if not data:
                    raise ConnectionError("the server closed the connection")
                msgs = ch.receive_data(data)
                out = ch.data_to_send()
                if out:
                    writer.write(out)
                if not hello_sent and ch.remote_static is not None and ch.state is State.OPEN:
                    self._send(m.Hello(name=self.name, version=__version__,
                                       endpoints=self.endpoints(), udp_port=self.udp_port(),
                                       auth_key=self.auth_key))
                    hello_sent = True
                for raw in msgs:
                    msg = m.decode_to_node(raw)
                    if isinstance(msg, m.Welcome) and heartbeat is None:
                        heartbeat = asyncio.create_task(self._heartbeats())
                    self._handle(msg)
                await writer.drain()
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    async def _heartbeats(self) -> None:
        told: list[m.PathReport] | None = None   # paths the server has from this session
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if self._channel is None:
                return
            paths = self.paths()[:m.MAX_PATH_REPORTS] if self.paths is not None else None
            try:
                self._send(m.Heartbeat(paths=paths if paths != told else None))
                told = paths
            except (ChannelError, ConnectionError):
                return

    def _handle(self, msg: m.Welcome | m.Result | m.Networks | m.Peers | m.Signal | m.Heartbeat
                | m.ErrorMsg | m.Grants) -> None:
        match msg:
            case m.Welcome():
                st = self.state
                st.online, st.virtual_ip, st.prefix_len = True, msg.virtual_ip, msg.prefix_len
                st.observed, st.last_error = msg.observed, None
                self._last_logged = None
                st.logins += 1
                log.info("logged in to %s as %s", self.server, msg.virtual_ip)
                self.on_welcome(msg)
                if self.on_login is not None:
                    asyncio.get_running_loop().create_task(self.on_login())
            case m.Result():
                fut = self._pending.get(msg.id)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            case m.Networks():
                self.state.networks = list(msg.networks)
                if self.on_networks is not None:
                    self.on_networks()
            case m.Peers():
                self.on_peers(msg)
            case m.Signal():
                if self.on_signal is not None:
                    self.on_signal(msg)
            case m.Heartbeat():
                pass
            case m.Grants():
                if self.on_grants is not None:
                    self.on_grants(msg)
            case m.ErrorMsg():
                raise LoginRefused(f"server refused the login: {msg.error}", msg.retry_after)


def host_addresses(exclude_ifname: str | None = None) -> list[str]:
    """IPv4 addresses of this host's interfaces (not loopback, not the overlay)."""
    import fcntl
    import ipaddress
    import struct

    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, ifname in socket.if_nameindex():
            if ifname == exclude_ifname or ifname == "lo":
                continue
            try:
                res = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                  struct.pack("256s", ifname.encode()[:15]))
            except OSError:
                continue
            ip = ipaddress.IPv4Address(res[20:24])
            if ip.is_loopback or ip in ipaddress.IPv4Network("100.64.0.0/10"):
                continue
            out.append(str(ip))
    finally:
        s.close()
    return out
