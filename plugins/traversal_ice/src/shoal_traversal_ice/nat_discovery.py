"""NAT behaviour discovery (RFC 5780 §4.3, §4.4) against the server's discovery endpoints.

The server lists its endpoints as [A1:P1, A1:P2, A2:P1, A2:P2] (two IPs x two
ports). With one socket (the node's own, so the answer describes the mapping
peers will see):

* test I:   ask A1:P1 -> mapped address M1 (no answer at all: UDP is blocked)
* mapping:  ask A2:P1 -> M2; M2 == M1: endpoint-independent; else ask A2:P2 -> M3;
            M3 == M2: address-dependent; else address-and-port-dependent
* filtering: ask A1:P1 to answer from A2:P2 -> answered: endpoint-independent;
            else to answer from A1:P2 -> answered: address-dependent;
            else address-and-port-dependent

Filtering is tested right after test I, before the mapping tests send to A2:
once the socket has sent to A2, an address-dependent filter lets A2's answers
in and would pass for endpoint-independent.

``Discovery`` owns the outstanding requests; ``classify`` is the procedure,
written against an injected ``ask`` so it can be tested without sockets.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shoal.config import parse_endpoint
from shoal.server import discovery as d

Addr = tuple[str, int]
EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"
UNKNOWN = "unknown"
TRIES = 3
TIMEOUT = 0.25

Ask = Callable[[int, int], Awaitable[Addr | None]]   # (endpoint index, flags) -> mapped addr


@dataclass
class NatResult:
    udp: bool = True
    mapping: str = UNKNOWN
    filtering: str = UNKNOWN
    public: Addr | None = None

    def as_dict(self) -> dict[str, object]:
        return {"mapping": self.mapping, "filtering": self.filtering, "udp": self.udp,
                "public_endpoint": f"{self.public[0]}:{self.public[1]}" if self.public else None}


async def classify(ask: Ask, n_endpoints: int, local_ips: list[str],
                   on_public: Callable[[Addr], None] | None = None) -> NatResult:
    r = NatResult()
    m1 = await ask(0, 0)
    if m1 is None:
        r.udp = False
        return r
    r.public = m1
    if on_public is not None:
        on_public(m1)  # trickle: the server-reflexive candidate is useful right away
    if n_endpoints < 4:
        return r
    # Both filtering tests at once: their answers come from different sources.
    other_ip, other_port = await asyncio.gather(ask(0, d.CHANGE_IP | d.CHANGE_PORT),
                                                ask(0, d.CHANGE_PORT))
    if other_ip is not None:
        r.filtering = EIM
    elif other_port is not None:
        r.filtering = ADM
    else:
        r.filtering = APDM
    if m1[0] in local_ips:
        r.mapping = EIM  # no NAT: the address is our own
    else:
        m2 = await ask(2, 0)
        if m2 is not None:
            if m2 == m1:
                r.mapping = EIM
            else:
                m3 = await ask(3, 0)
                if m3 is not None:
                    r.mapping = ADM if m3 == m2 else APDM
    return r


class Discovery:
    """Requests over a send function; responses are fed back by the node's demux."""

    def __init__(self, endpoints: list[str], send: Callable[[bytes, Addr], None]) -> None:
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.send = send
        self._waiting: dict[bytes, asyncio.Future[Addr]] = {}

    def on_datagram(self, data: bytes) -> bool:
        resp = d.decode_response(data)
        if resp is None:
            return False
        txid, mapped, _ = resp
        fut = self._waiting.pop(txid, None)
        if fut is not None and not fut.done():
            fut.set_result(mapped)
        return True

    async def ask(self, index: int, flags: int) -> Addr | None:
        if index >= len(self.endpoints):
            return None
        loop = asyncio.get_running_loop()
        for _ in range(TRIES):
            txid = os.urandom(12)
            fut: asyncio.Future[Addr] = loop.create_future()
            self._waiting[txid] = fut
            try:
                self.send(d.encode_request(txid, flags), self.endpoints[index])
                return await asyncio.wait_for(fut, TIMEOUT)
            except (asyncio.TimeoutError, TimeoutError, OSError):
                continue
            finally:
                self._waiting.pop(txid, None)
        return None
