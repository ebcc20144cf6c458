"""The node's WSS transport: the relay over WebSocket on TLS, optionally through a proxy.

Connection machine (each transition logged at debug level)::

    IDLE --grant--> CONNECTING --TLS, pin ok, upgraded--> REGISTERING --ALLOCED--> READY
                        |  proxy refused, TLS/pin/timeout       |  refused, timeout   |
                        v                                       v                     | lost
                     BACKOFF <----------------------------------+<--------------------+
                        |  delay (exponential, jittered, reset after READY)
                        +--> CONNECTING

* CONNECTING: TCP to the relay, or to ``proxy`` followed by HTTP CONNECT
  (``websockets`` does it), then TLS, then the WebSocket upgrade. The
  certificate's SHA-256 must equal the fingerprint in the relay grant, which
  came over the authenticated control channel (``pinning``); nothing is sent
  on a connection that fails this check.
* REGISTERING: the same ALLOC as the UDP/TCP relay client (the relay checks
  the grant the coordination server issued), answered by ALLOCED.
* READY: SEND/DATA carry sealed packets; ALLOC again every ``REFRESH`` s.
  WebSocket pings every ``PING_INTERVAL`` s find a dead proxy or relay.

Peers reached through it are addressed ``("relay", <peer id hex>)``, as with
the UDP/TCP relay client, so both talk to one relay core on the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidProxyStatus, WebSocketException

from shoal.transport import Delivery, Endpoint, PathKind, Readiness, Receive, Transport

from shoal_transport_relay import protocol as p
from shoal_transport_wss import pinning
from shoal_transport_wss.backoff import Backoff
from shoal_transport_wss.framing import (
    MAX_MESSAGE,
    Alloced,
    Data,
    FrameCounters,
    Refused,
    decode_from_relay,
)
from shoal_transport_wss.nonblocking import write_now
from shoal_transport_wss.settings import redact

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0     # proxy + TLS + upgrade
REGISTER_TIMEOUT = 5.0
REFRESH = 15.0
PING_INTERVAL = 4.0
PING_TIMEOUT = 4.0


class WssState(Enum):
    IDLE = "idle"                  # no grant yet (not logged in)
    CONNECTING = "connecting"
    REGISTERING = "registering"
    READY = "ready"
    BACKOFF = "backoff"
    CLOSED = "closed"


@dataclass
class WssCounters:
    connects: int = 0          # connections that became READY
    failures: int = 0          # attempts that failed before READY
    lost: int = 0              # READY connections that went away
    pin_failures: int = 0
    proxy_refusals: int = 0
    refused: int = 0           # REFUSED messages from the relay
    send_failed: int = 0


class RelayRefused(Exception):
    pass


@dataclass(frozen=True)
class WssGrant:
    """What the coordination server hands a node for one wss relay (control channel)."""

    url: str             # "wss://203.0.113.10:443/shoal/relay"
    fingerprint: str     # "sha256:<hex>" of the relay's certificate
    token: bytes         # HMAC(relay secret, node key | expires | tags), see the relay protocol
    expires: int
    tags: tuple[bytes, ...] = ()   # the node's networks: the relay forwards within them


class WssClient(Transport):
    """A relayed transport carrying sealed packets to the relay over one WebSocket.

    Readiness (``shoal.transport``): STARTING until the first registration,
    READY while registered, LOST from a lost connection until the next
    registration; the core moves peers off it meanwhile and back afterwards.
    """

    name = "wss"
    kind = PathKind.RELAYED
    delivery = Delivery.STREAM
    #: IPv4 + TCP (40) + TLS 1.3 record (22) + WebSocket client frame (8) + relay header (11)
    overhead = 40 + 22 + 8 + p.HEADER_LEN
    max_datagram = 65535

    def __init__(self, local_key: bytes, proxy: str | None = None,
                 connect: Callable[..., Any] = ws_connect,
                 backoff: Backoff | None = None) -> None:
        self.local_key = local_key
        self.proxy = proxy
        self.state = WssState.IDLE
        self.rtt_ms: float | None = None
        self.relay: str | None = None          # the relay's URL (status, netcheck)
        self.last_error: str | None = None
        self.counters = WssCounters()
        self.dropped = FrameCounters()
        self._connect = connect
        self._backoff = backoff or Backoff()
        self._receive: Receive | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._grant: WssGrant | None = None
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None
        self._alloced = asyncio.Event()
        self._refusal: int | None = None
        self._sent_ts = 0
        self._sent_at = 0.0
        self._last_realloc = 0.0

    @property
    def ready(self) -> bool:
        return self.state is WssState.READY

    def endpoint_for(self, peer_key: bytes) -> tuple[str, str]:
        """How a peer is addressed through the relay (the same as over UDP/TCP)."""
        return ("relay", p.node_id(peer_key).hex())

    def describe(self) -> dict[str, Any]:
        return {"mode": "wss", "address": self.relay, "proxy": redact(self.proxy),
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2)}

    # ------------------------------------------------------------ transport API
    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self._loop = loop
        self._receive = receive

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        ws = self._ws
        if ws is None or self.state is not WssState.READY:
            raise OSError("wss relay not connected")
        try:
            write_now(ws, p.encode_send(bytes.fromhex(endpoint[1]), data))
        except OSError:
            self.counters.send_failed += 1
            raise

    def local_endpoints(self) -> list[str]:
        return []

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._ws is not None:
            self._ws.transport.abort()
            self._ws = None
        self._set(WssState.CLOSED)
        self.set_readiness(Readiness.CLOSED, "closed")

    # ------------------------------------------------------------ grants
    def use_grant(self, grant: WssGrant) -> None:
        """Connect (or, on the next reconnect, use this newer grant)."""
        self._grant = grant
        self.relay = grant.url
        if self._task is None or self._task.done():
            loop = self._loop or asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
        elif self._ws is not None:
            # a refreshed grant (new networks, or the old one ageing): register with it now
            try:
                write_now(self._ws, self._alloc_msg(grant))
            except OSError:
                pass

    # ------------------------------------------------------------ connection machine
    def _set(self, state: WssState) -> None:
        if state is not self.state:
            log.debug("wss: %s -> %s", self.state.value, state.value)
            self.state = state

    def _fail(self, message: str, error: bool = False) -> None:
        self.counters.failures += 1
        if message != self.last_error:   # the same failure again is not news
            log.log(logging.ERROR if error else logging.WARNING, "%s", message)
        else:
            log.debug("%s", message)
        self.last_error = message

    async def _run(self) -> None:
        while True:
            grant = self._grant
            target = urlsplit(grant.url)
            where = f"{target.hostname}:{target.port or 443}"
            via = f" through proxy {redact(self.proxy)}" if self.proxy else ""
            try:
                await self._session(grant, where)
            except asyncio.CancelledError:
                raise
            except pinning.PinMismatch as e:
                self.counters.pin_failures += 1
                self._fail(str(e), error=True)
            except InvalidProxyStatus as e:
                self.counters.proxy_refusals += 1
                self._fail(f"wss: proxy {redact(self.proxy)} refused CONNECT to {where}: "
                           f"HTTP {e.response.status_code} {e.response.reason_phrase}".rstrip())
            except RelayRefused as e:
                self._fail(f"wss: relay {where} refused this node: {e}")
            except (OSError, TimeoutError, WebSocketException) as e:
                self._fail(f"wss: cannot reach relay {where}{via}: {_describe(e)}")
            self._set(WssState.BACKOFF)
            await asyncio.sleep(self._backoff.delay())

    async def _session(self, grant: WssGrant, where: str) -> None:
        if not grant.fingerprint:
            raise pinning.PinMismatch(f"wss relay {where}: the coordination server sent no "
                                      "certificate fingerprint; refusing an unpinned relay")
        self._set(WssState.CONNECTING)
        ws = await self._connect(grant.url, ssl=pinning.client_context(), proxy=self.proxy,
                                 open_timeout=CONNECT_TIMEOUT, ping_interval=PING_INTERVAL,
                                 ping_timeout=PING_TIMEOUT, close_timeout=1.0,
                                 max_size=MAX_MESSAGE, compression=None,
                                 user_agent_header=None)
        reader: asyncio.Task[None] | None = None
        try:
            ssl_object = ws.transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            pinning.check(der, grant.fingerprint, where)
            self._set(WssState.REGISTERING)
            self._ws = ws
            self._alloced.clear()
            self._refusal = None
            reader = asyncio.create_task(self._read(ws))
            write_now(ws, self._alloc_msg(self._grant or grant))   # the newest grant
            alloced = asyncio.create_task(self._alloced.wait())
            done, _ = await asyncio.wait({alloced, reader}, timeout=REGISTER_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            alloced.cancel()
            if self._refusal is not None:
                raise RelayRefused(_REFUSALS.get(self._refusal, f"reason {self._refusal}"))
            if alloced not in done:
                raise TimeoutError("no answer to the registration") if reader not in done \
                    else ConnectionError("the relay closed the connection")
            self._became_ready(where)
            while True:
                done, _ = await asyncio.wait({reader}, timeout=REFRESH)
                if reader in done:
                    break
                write_now(ws, self._alloc_msg(self._grant or grant))
            self._lost(where, "connection closed")
        except OSError as e:
            if self.state is WssState.READY:
                self._lost(where, _describe(e))
            else:
                raise
        finally:
            self._ws = None
            if reader is not None:
                reader.cancel()
            ws.transport.abort()

    def _became_ready(self, where: str) -> None:
        self._set(WssState.READY)
        self._backoff.reset()
        self.counters.connects += 1
        self.last_error = None
        via = f" through proxy {redact(self.proxy)}" if self.proxy else ""
        log.info("wss relay ready at %s%s (rtt %.1f ms)", where, via, self.rtt_ms or 0)
        self.set_readiness(Readiness.READY, f"registered with {where}{via}")

    def _lost(self, where: str, why: str) -> None:
        self._ws = None
        self._set(WssState.BACKOFF)
        self.counters.lost += 1
        log.warning("wss relay %s lost: %s; reconnecting", where, why)
        self.set_readiness(Readiness.LOST, f"{where}: {why}")

    async def _read(self, ws: Any) -> None:
        try:
            async for message in ws:
                self._on_message(message)
        except ConnectionClosed:
            pass

    def _alloc_msg(self, grant: WssGrant) -> bytes:
        self._sent_ts = max(int(time.time() * 1000), self._sent_ts + 1)
        self._sent_at = time.monotonic()
        return p.encode_alloc(grant.token, self.local_key, grant.expires, self._sent_ts,
                              grant.tags)

    def _on_message(self, message: bytes | str) -> None:
        match decode_from_relay(message, self.dropped):
            case Data(source, payload):
                if self._receive is not None:
                    self._receive(payload, ("relay", source))
            case Alloced():
                self.rtt_ms = (time.monotonic() - self._sent_at) * 1000
                self._alloced.set()
            case Refused(reason):
                self.counters.refused += 1
                if self.state is WssState.REGISTERING and reason != p.REFUSE_NOT_REGISTERED:
                    self._refusal = reason
                    self._alloced.set()
                elif reason == p.REFUSE_NOT_REGISTERED and self._ws is not None \
                        and self._grant is not None:
                    # The relay forgot us (it restarted): register again, at most twice a second.
                    now = time.monotonic()
                    if now - self._last_realloc > 0.5:
                        self._last_realloc = now
                        try:
                            write_now(self._ws, self._alloc_msg(self._grant))
                        except OSError:
                            pass

    def status(self) -> dict[str, Any]:
        """``status --json`` -> ``wss``."""
        return {"state": self.state.value, "ready": self.ready, "relay": self.relay,
                "proxy": redact(self.proxy),
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
                "last_error": self.last_error, **asdict(self.counters),
                "dropped": asdict(self.dropped)}


_REFUSALS = {p.REFUSE_BAD_GRANT: "the grant is not valid here (does the relay share the "
                                 "coordination server's relay.secret?)",
             p.REFUSE_EXPIRED: "the grant expired or the clocks disagree"}


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror
    return text.splitlines()[0]
