"""The coordination server's discovery endpoints: a STUN server (RFC 8489 Binding, RFC 5780).

The server listens on every address in ``discovery``, typically two IPs x two
ports in the order [A1:P1, A1:P2, A2:P1, A2:P2]. Any standard client
(``turnutils_natdiscovery``, a Shoal node, a browser) sends a Binding request
to one endpoint and gets, from the endpoint CHANGE-REQUEST asks for::

    Binding success response (0x0101)
      XOR-MAPPED-ADDRESS   the request's source address, as this server saw it
      MAPPED-ADDRESS       the same, for RFC 3489-era clients
      RESPONSE-ORIGIN      the endpoint that sends this answer
      OTHER-ADDRESS        the endpoint that differs from the one asked in both IP and port
      SOFTWARE, FINGERPRINT

CHANGE-REQUEST (0x0003) flags: 0x04 answer from the other IP, 0x02 from the
other port (RFC 5780 §7.2). A CHANGE-REQUEST the configured endpoints cannot
honour, or a comprehension-required attribute the codec does not know, gets a
420 error response (with UNKNOWN-ATTRIBUTES), never an answer from the wrong
place: a client would take that for endpoint-independent filtering.

``answer`` is the whole protocol, sans-IO; ``serve`` is the asyncio shell.
Datagrams that are not Binding requests are dropped and counted; every source
is rate-limited (``SourceLimiter``) so the service is no amplifier.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from shoal import __version__, stun
from shoal.config import parse_endpoint

log = logging.getLogger(__name__)

Addr = tuple[str, int]
SOFTWARE = f"shoal {__version__}"
RATE_PER_SOURCE = 200.0       # answers per second per source IP (burst: one second's worth)
MAX_SOURCES = 4096            # rate-limit table bound


def pick_responder(endpoints: list[Addr], index: int, flags: int) -> int:
    """The endpoint that should answer a request received on ``index`` (-1: none)."""
    host, port = endpoints[index]
    for j, (h, p) in enumerate(endpoints):
        if bool(flags & stun.CHANGE_IP) == (h != host) and \
                bool(flags & stun.CHANGE_PORT) == (p != port):
            return j
    return -1


def other_address(endpoints: list[Addr], index: int) -> Addr | None:
    """OTHER-ADDRESS for requests to ``index``: differs in both IP and port (RFC 5780 §7.4)."""
    j = pick_responder(endpoints, index, stun.CHANGE_IP | stun.CHANGE_PORT)
    return endpoints[j] if j >= 0 else None


@dataclass(frozen=True)
class Reply:
    responder: int       # index of the endpoint that must send it
    data: bytes


def answer(endpoints: list[Addr], index: int, data: bytes, src: Addr) -> Reply:
    """The reply to ``data`` received on ``endpoints[index]`` from ``src``.

    Raises ``StunError`` for anything but a well-formed Binding request (dropped).
    """
    msg = stun.decode(data)  # StunError: the caller counts it
    if msg.message_class != stun.Class.REQUEST or msg.message_method != stun.Method.BINDING:
        raise stun.StunError("not a Binding request")
    unknown = stun.unknown_required(data)
    flags = int(msg.attributes.get("CHANGE-REQUEST", 0))
    j = pick_responder(endpoints, index, flags)
    if unknown or j < 0:
        if not unknown:
            unknown = [0x0003]  # CHANGE-REQUEST that cannot be honoured (RFC 5780 §6.1)
        err = stun.error_response(msg, 420, "Unknown Attribute", UNKNOWN_ATTRIBUTES=unknown)
        err.attributes["SOFTWARE"] = SOFTWARE
        return Reply(index, stun.encode(err))
    attrs: dict[str, object] = {"XOR-MAPPED-ADDRESS": src, "MAPPED-ADDRESS": src,
                                "RESPONSE-ORIGIN": endpoints[j]}
    other = other_address(endpoints, index)
    if other is not None:
        attrs["OTHER-ADDRESS"] = other
    attrs["SOFTWARE"] = SOFTWARE
    resp = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, msg.transaction_id, attrs)
    return Reply(j, stun.encode(resp))


class SourceLimiter:
    """Token bucket per source IP, bounded: when the table is full it starts afresh."""

    def __init__(self, rate: float = RATE_PER_SOURCE, max_sources: int = MAX_SOURCES) -> None:
        self.rate, self.max_sources = rate, max_sources
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, ip: str, now: float) -> bool:
        tokens, last = self._buckets.get(ip, (self.rate, now))
        tokens = min(self.rate, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[ip] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_sources and ip not in self._buckets:
            self._buckets.clear()
        self._buckets[ip] = (tokens - 1.0, now)
        return True


@dataclass
class Counters:
    answered: int = 0
    malformed: int = 0
    limited: int = 0


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, index: int, group: list[Addr],
                 transports: list[asyncio.DatagramTransport | None],
                 limiter: SourceLimiter, counters: Counters) -> None:
        self.index = index
        self.group = group
        self.transports = transports
        self.limiter = limiter
        self.counters = counters

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        src = (addr[0], addr[1])
        if not self.limiter.allow(src[0], time.monotonic()):
            self.counters.limited += 1
            return
        try:
            reply = answer(self.group, self.index, data, src)
        except stun.StunError:
            self.counters.malformed += 1
            return
        t = self.transports[reply.responder]
        if t is not None:
            t.sendto(reply.data, src)
            self.counters.answered += 1


async def serve(endpoints: list[str], counters: Counters | None = None,
                rate: float = RATE_PER_SOURCE) -> list[asyncio.DatagramTransport]:
    """Listen on every endpoint; they answer for each other as CHANGE-REQUEST asks."""
    loop = asyncio.get_running_loop()
    group = [parse_endpoint(e) for e in endpoints]
    transports: list[asyncio.DatagramTransport | None] = [None] * len(group)
    limiter = SourceLimiter(rate)
    shared = counters if counters is not None else Counters()
    def factory(i: int) -> Callable[[], _Endpoint]:
        return lambda: _Endpoint(i, group, transports, limiter, shared)

    for i, (host, port) in enumerate(group):
        t, _ = await loop.create_datagram_endpoint(factory(i), local_addr=(host, port),
                                                   family=socket.AF_INET)
        transports[i] = t
    return [t for t in transports if t is not None]
