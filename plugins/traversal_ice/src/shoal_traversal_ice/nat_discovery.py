"""NAT behaviour discovery (RFC 5780 §4.3, §4.4) with STUN, on the node's own UDP socket.

Any RFC 5780 server works: the coordination server's discovery endpoints or
the ``[plugin.ice] stun`` list (coturn, ...). From one Binding answer of the
server's primary address A1:P1 the procedure learns OTHER-ADDRESS A2:P2 and
goes on from there, always on the same socket (so the answers describe the
mapping peers will see):

* test I:    Binding to A1:P1 -> mapped address M1 (no answer: unreachable / UDP blocked)
* filtering: A1:P1 with CHANGE-REQUEST ip+port -> answered from A2:P2: endpoint-independent;
             else CHANGE-REQUEST port -> answered from A1:P2: address-dependent;
             else address-and-port-dependent
* mapping:   Binding to A2:P1 -> M2; M2 == M1: endpoint-independent; else to A2:P2 -> M3;
             M3 == M2: address-dependent; else address-and-port-dependent

Filtering is tested right after test I, before the mapping tests send to A2:
once the socket has sent to A2, an address-dependent filter lets A2's answers
in and would pass for endpoint-independent. An answer that comes from another
address than the one CHANGE-REQUEST asked for does not count (a server that
ignores CHANGE-REQUEST must not make a NAT look open). A server without
OTHER-ADDRESS (plain RFC 8489, most public STUN servers) yields the public
endpoint only.

``classify`` is the procedure for one server, written against an injected
``ask`` so it runs against fake NATs in tests; ``discover`` walks the server
list: the first server that classifies fully decides, the others answer
test I only (so ``shoal netcheck`` shows what each one saw).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shoal import stun
from shoal.stun_client import StunClient

Addr = tuple[str, int]
EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"
UNKNOWN = "unknown"
TRIES = 3
TIMEOUT = 0.25


@dataclass(frozen=True)
class Answer:
    mapped: Addr
    source: Addr              # where the answer came from
    other: Addr | None        # OTHER-ADDRESS
    rtt: float


Ask = Callable[[Addr, int], Awaitable[Answer | None]]   # (server, CHANGE-REQUEST flags)


def fmt(addr: Addr | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


@dataclass
class ServerView:
    """What one STUN server told this node."""

    server: str                        # as configured, "host:port"
    origin: str                        # "coordination server" or "config"
    address: Addr | None = None        # resolved
    reachable: bool = False
    public: Addr | None = None
    rtt_ms: float | None = None
    rfc5780: bool = False              # answered with OTHER-ADDRESS
    mapping: str | None = None         # only for the server that classified
    filtering: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"server": self.server, "origin": self.origin, "reachable": self.reachable,
                "public_endpoint": fmt(self.public), "rtt_ms": self.rtt_ms,
                "rfc5780": self.rfc5780, "mapping": self.mapping, "filtering": self.filtering,
                "error": self.error}


@dataclass
class NatResult:
    udp: bool = True
    mapping: str = UNKNOWN
    filtering: str = UNKNOWN
    public: Addr | None = None
    server: str | None = None          # the server whose tests classified the NAT
    servers: list[ServerView] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.mapping != UNKNOWN and self.filtering != UNKNOWN

    def as_dict(self) -> dict[str, object]:
        return {"mapping": self.mapping, "filtering": self.filtering, "udp": self.udp,
                "public_endpoint": fmt(self.public), "server": self.server,
                "stun": [v.as_dict() for v in self.servers]}


async def classify(ask: Ask, server: Addr, local_ips: list[str], view: ServerView,
                   on_public: Callable[[Addr], None] | None = None) -> NatResult:
    """RFC 5780 tests against one server; fills ``view`` with what it saw."""
    r = NatResult()
    a1 = await ask(server, 0)
    if a1 is None:
        r.udp = False
        view.error = view.error or "no answer"
        return r
    view.reachable, view.public, view.rtt_ms = True, a1.mapped, round(a1.rtt * 1000, 2)
    r.public = a1.mapped
    if on_public is not None:
        on_public(a1.mapped)  # trickle: the server-reflexive candidate is useful right away
    other = a1.other
    if other is None or other[0] == server[0] or other[1] == server[1]:
        return r  # no RFC 5780 support: the public endpoint is all we learn
    view.rfc5780 = True
    # Both filtering tests at once: their answers come from different sources.
    both, port = await asyncio.gather(ask(server, stun.CHANGE_IP | stun.CHANGE_PORT),
                                      ask(server, stun.CHANGE_PORT))
    if both is not None and both.source == other:
        r.filtering = EIM
    elif port is not None and port.source == (server[0], other[1]):
        r.filtering = ADM
    elif both is None and port is None:
        r.filtering = APDM
    if a1.mapped[0] in local_ips:
        r.mapping = EIM  # no NAT: the address is our own
    else:
        a2 = await ask((other[0], server[1]), 0)
        if a2 is not None:
            if a2.mapped == a1.mapped:
                r.mapping = EIM
            else:
                a3 = await ask(other, 0)
                if a3 is not None:
                    r.mapping = ADM if a3.mapped == a2.mapped else APDM
    view.mapping, view.filtering = r.mapping, r.filtering
    return r


async def test_one(ask: Ask, server: Addr, view: ServerView) -> Answer | None:
    """Test I only: reachability, RTT and the mapped address this server sees."""
    a = await ask(server, 0)
    if a is None:
        view.reachable, view.error = False, "no answer"
        return None
    view.reachable, view.public, view.rtt_ms, view.error = (
        True, a.mapped, round(a.rtt * 1000, 2), None)
    view.rfc5780 = a.other is not None
    return a


async def discover(ask: Ask, servers: list[tuple[Addr, ServerView]], local_ips: list[str],
                   on_public: Callable[[Addr], None] | None = None) -> NatResult:
    """Classify with the first server that can; the others answer test I."""
    result: NatResult | None = None
    public_seen: NatResult | None = None
    for addr, view in servers:
        if result is None:
            r = await classify(ask, addr, local_ips, view, on_public)
            if r.public is not None and public_seen is None:
                public_seen = r
                on_public = None
            if r.complete:
                result = r
                result.server = view.server
        else:
            await test_one(ask, addr, view)
    final = result or public_seen or NatResult(udp=not servers)
    if result is None and public_seen is not None:
        final.udp = True
    final.servers = [v for _, v in servers]
    return final


class StunAsker:
    """``Ask`` over a ``StunClient`` (the node's socket): Binding requests, parsed answers."""

    def __init__(self, client: StunClient, tries: int = TRIES, timeout: float = TIMEOUT) -> None:
        self.client, self.tries, self.timeout = client, tries, timeout

    async def __call__(self, server: Addr, flags: int) -> Answer | None:
        resp = await self.client.request(stun.binding_request(flags), server, self.tries,
                                         self.timeout)
        if resp is None or resp.message.message_class != stun.Class.RESPONSE:
            return None
        try:
            b = stun.BindingAnswer.from_message(resp.message)
        except stun.StunError:
            return None
        return Answer(mapped=b.mapped, source=resp.source, other=b.other, rtt=resp.rtt)
