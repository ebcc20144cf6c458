"""The node's relay transport: UDP to the relay, TCP where UDP is blocked.

When the relay stops answering over UDP mid-session (a network that starts
dropping UDP), the client reconnects over TCP at once, and keeps trying TCP
first for ``TCP_FIRST_FOR`` seconds, so relayed peers are back within a
round trip or two of the loss being noticed.

Endpoints of relayed peers are ``("relay", <peer id hex>)``. Until the node
has logged in (and so holds a grant) the transport is not ready and ``send``
fails like an unreachable network.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from typing import Any

from shoal.config import parse_endpoint
from shoal.control.messages import Grants, Welcome
from shoal.transport import Delivery, Endpoint, PathKind, Readiness, Receive, Transport

from shoal_transport_relay import protocol as p

log = logging.getLogger(__name__)

REFRESH = 15.0           # re-ALLOC: keeps the registration and the NAT mapping alive
#: Over UDP nothing says the relay stopped answering (a network that starts dropping
#: UDP): re-ALLOC this often and count the relay lost after UDP_DEAD_AFTER without an
#: ALLOCED, so peers move to another relayed transport before their tunnels notice.
UDP_KEEPALIVE = 0.5
UDP_DEAD_AFTER = 1.25
UDP_TRIES = 2
UDP_TIMEOUT = 0.25
#: After the relay stopped answering over UDP, reconnect over TCP first for this long
#: (UDP is likely blocked: its tries would only delay the fallback), then UDP first again.
TCP_FIRST_FOR = 60.0


class RelayClient(Transport):
    name = "relay"
    kind = PathKind.RELAYED
    delivery = Delivery.DATAGRAM   # over TCP it frames datagrams itself
    overhead = 28 + p.HEADER_LEN

    def __init__(self, local_key: bytes) -> None:
        self.local_key = local_key
        self.mode: str | None = None        # "udp" | "tcp"
        self.rtt_ms: float | None = None
        self.relay: str | None = None
        self.refused = 0
        self._receive: Receive | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._grant: Any = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._alloced = asyncio.Event()
        self._sent_ts = 0
        self._ids: dict[str, bytes] = {}
        self._last_realloc = 0.0
        self._alloced_at = 0.0
        self._cookie = p.NO_COOKIE          # the relay's return-routability cookie (UDP)
        self._challenged = False
        self._tcp_first_until = 0.0         # monotonic: UDP to the relay died recently

    @property
    def ready(self) -> bool:
        return self.readiness is Readiness.READY

    def endpoint_for(self, peer_key: bytes) -> tuple[str, str]:
        """How a peer is addressed through the relay."""
        return ("relay", p.node_id(peer_key).hex())

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "address": self.relay,
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2)}

    # ------------------------------------------------------------ transport API
    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self._loop = loop
        self._receive = receive

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        if not self.ready:
            raise OSError("relay not ready")
        dst = self._ids.get(endpoint[1])
        if dst is None:
            dst = self._ids[endpoint[1]] = bytes.fromhex(endpoint[1])
        msg = p.encode_send(dst, data)
        if self._udp is not None:
            self._udp.sendto(msg)
        elif self._tcp is not None:
            self._tcp.write(len(msg).to_bytes(2, "big") + msg)
        else:
            raise OSError("relay not connected")

    def local_endpoints(self) -> list[str]:
        return []

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._disconnect()

    # ------------------------------------------------------------ grants
    def on_welcome(self, welcome: Welcome | Grants) -> None:
        """A login's welcome or a pushed ``grants`` message: both carry ``relays``."""
        grants = [g for g in welcome.relays if g.udp or g.tcp]   # others are for other clients
        if not grants:
            return
        self._grant = grants[0]
        if self._task is None or self._task.done():
            assert self._loop is not None
            self._task = self._loop.create_task(self._run())
        elif self.ready:  # a fresh grant (new networks, or a refresh): register with it now
            self._send_raw(self._alloc_msg())

    def _alloc_msg(self) -> bytes:
        g = self._grant
        token = base64.b64decode(g.token)
        self._sent_ts = max(int(time.time() * 1000), self._sent_ts + 1)
        self._sent_at = time.monotonic()
        tags = [bytes.fromhex(t) for t in getattr(g, "tags", [])]
        return p.encode_alloc(token, self.local_key, g.expires, self._sent_ts, tags,
                              self._cookie)

    async def _run(self) -> None:
        last_refresh = 0.0
        while True:
            try:
                now = time.monotonic()
                if not self.ready:
                    await self._connect()
                    last_refresh = time.monotonic()
                elif self.mode == "udp":
                    if now - self._alloced_at > UDP_DEAD_AFTER:
                        self._tcp_first_until = now + TCP_FIRST_FOR
                        raise OSError(f"no answer from the relay over UDP for "
                                      f"{now - self._alloced_at:.1f} s")
                    self._send_raw(self._alloc_msg())
                elif now - last_refresh >= REFRESH:
                    self._send_raw(self._alloc_msg())
                    last_refresh = now
                await asyncio.sleep(UDP_KEEPALIVE if self.ready else 2.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep trying; the relay may come back
                log.debug("relay: %s", e)
                self._disconnect(str(e))
                await asyncio.sleep(0.0 if self._tcp_first_until > time.monotonic()
                                    else 0.1 if self.mode == "udp" else 2.0)

    def _send_raw(self, msg: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(msg)
        elif self._tcp is not None:
            self._tcp.write(len(msg).to_bytes(2, "big") + msg)

    async def _connect(self) -> None:
        self._disconnect()
        g = self._grant
        if g.tcp and g.udp and time.monotonic() < self._tcp_first_until:
            try:
                await self._connect_tcp(g)
                return
            except (OSError, TimeoutError):
                pass
        await self._connect_udp_then_tcp(g)

    async def _connect_udp_then_tcp(self, g: Any) -> None:
        loop = asyncio.get_running_loop()
        if g.udp:
            self._alloced.clear()
            t, _ = await loop.create_datagram_endpoint(
                lambda: _UdpSide(self), remote_addr=parse_endpoint(g.udp), family=socket.AF_INET)
            self._udp = t
            for _ in range(UDP_TRIES):
                self._challenged = False
                t.sendto(self._alloc_msg())
                try:
                    await asyncio.wait_for(self._alloced.wait(), UDP_TIMEOUT)
                    self._ready("udp", g.udp)
                    return
                except (asyncio.TimeoutError, TimeoutError):
                    if not self._challenged:
                        continue
                try:  # the relay answered (a challenge): UDP works, allow a slower echo
                    await asyncio.wait_for(self._alloced.wait(), 4 * UDP_TIMEOUT)
                    self._ready("udp", g.udp)
                    return
                except (asyncio.TimeoutError, TimeoutError):
                    continue
            t.close()
            self._udp = None
        if g.tcp:
            await self._connect_tcp(g)
            return
        raise OSError("relay unreachable over UDP and TCP")

    async def _connect_tcp(self, g: Any) -> None:
        self._disconnect()
        self._alloced.clear()
        host, port = parse_endpoint(g.tcp)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tcp = writer
        self._tcp_reader = asyncio.get_running_loop().create_task(self._read_tcp(reader))
        self._send_raw(self._alloc_msg())
        await asyncio.wait_for(self._alloced.wait(), 5.0)
        self._ready("tcp", g.tcp)

    def _ready(self, mode: str, where: str) -> None:
        if not self.ready or self.mode != mode:
            log.info("relay ready via %s %s (rtt %.1f ms)", mode, where, self.rtt_ms or 0)
        self.mode, self.relay = mode, where
        self.name = f"relay-{mode}"
        self.set_readiness(Readiness.READY, f"registered with {where} over {mode}")

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(2), "big")
                self.on_message(await reader.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError):
            self._disconnect()

    def _disconnect(self, reason: str = "disconnected from the relay") -> None:
        if self.readiness is Readiness.READY:
            self.set_readiness(Readiness.LOST, reason)
        self._cookie = p.NO_COOKIE
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None

    def on_message(self, data: bytes) -> None:
        if len(data) < 3 or data[:2] != p.MAGIC:
            return
        kind = data[2]
        if kind == p.DATA and len(data) > p.HEADER_LEN and self._receive is not None:
            self._receive(data[p.HEADER_LEN:], ("relay", data[3:p.HEADER_LEN].hex()))
        elif kind == p.CHALLENGE:
            # The relay checks that this address receives what it sends (first
            # registration, or our NAT moved us): answer with the cookie, once per echo.
            ch = p.decode_challenge(data)
            if ch is not None and ch[0] == self._sent_ts and self._grant is not None:
                self._challenged = True
                self._cookie = ch[1]
                self._send_raw(self._alloc_msg())
        elif kind == p.ALLOCED:
            # only the answer to our latest ALLOC counts (a stray or replayed one does not)
            if len(data) >= p.ALLOCED_MSG.size and self._sent_ts \
                    and p.ALLOCED_MSG.unpack_from(data)[2] == self._sent_ts:
                self._alloced_at = time.monotonic()
                self.rtt_ms = (self._alloced_at - self._sent_at) * 1000
                self._alloced.set()
        elif kind == p.REFUSED:
            self.refused += 1
            if len(data) > 3 and data[3] == p.REFUSE_NOT_REGISTERED and self._grant is not None:
                # The relay does not know this address (it restarted, or our NAT
                # gave us a new port): register again at once, at most twice a second.
                now = time.monotonic()
                if now - self._last_realloc > 0.5:
                    self._last_realloc = now
                    self._send_raw(self._alloc_msg())


class _UdpSide(asyncio.DatagramProtocol):
    def __init__(self, client: RelayClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client.on_message(data)

    def error_received(self, exc: Exception) -> None:
        pass
