"""The ``turn`` transport: a relayed address on the best TURN server (transport contract 1.x).

Start-up allocates on every configured server at once and keeps the one whose
allocation answered fastest (lowest measured RTT); the others are released.
Failures are remembered per server as one line (``describe``) for status and
netcheck. With no allocation the transport is ``LOST`` and tries again with
backoff (``RETRY_MIN`` .. ``RETRY_MAX`` seconds).

Paths over it (kind ``RELAYED``): endpoints are peers' addresses as the TURN
server sees them. The relayed address is this node's candidate
(``turn=IP:PORT``, announced through the coordination server), so a peer

* with its own ``turn`` transport sends from its relayed address to ours
  (``endpoint_for``: the peer's announced relayed address), and
* without one reaches ours with plain UDP from its main socket (its ICE agent
  treats ``turn=`` candidates as relay candidates).

Either way the peer's packets arrive only from IPs with a permission, so
``watch_peer`` installs permissions for every address a peer announced (and
a channel for its relayed address); a peer that shows up from a new address
(a symmetric NAT's port) gets a channel bound on its first packet.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from typing import Any

from shoal.config import parse_endpoint
from shoal.transport import Delivery, PathKind, Readiness, Receive, Transport

from shoal_transport_turn.client import ServerSpec, TurnClient, TurnFailed
from shoal_transport_turn.credentials import Credentials

log = logging.getLogger(__name__)

Addr = tuple[str, int]
RETRY_MIN, RETRY_MAX = 2.0, 60.0
MAX_WATCHED = 1024


class TurnTransport(Transport):
    name = "turn"
    kind = PathKind.RELAYED
    delivery = Delivery.DATAGRAM
    overhead = 20 + 8 + 4            # IP + UDP + ChannelData header
    max_datagram = 65535 - 36

    def __init__(self, servers: list[tuple[ServerSpec, Callable[[], Credentials]]],
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.configured = list(servers)
        self.announced: list[tuple[ServerSpec, Callable[[], Credentials]]] = []
        self.servers = list(servers)
        self.tls_context = tls_context
        self._changed = asyncio.Event()
        self.client: TurnClient | None = None
        self.errors: dict[str, str] = {}            # server -> one line
        self.measured: dict[str, float] = {}         # server -> rtt (s) of its allocation
        self.peers: dict[bytes, Addr] = {}           # peer key -> its relayed address
        self._receive: Receive | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._binding: set[Addr] = set()

    # ------------------------------------------------------------ contract
    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self._receive = receive
        self._tasks.append(loop.create_task(self._run()))

    def send(self, data: bytes, endpoint: Any) -> None:
        c = self.client
        if c is None:
            raise OSError("no TURN allocation")
        c.send(data, endpoint)

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.client is not None:
            self.client.close_now()
        self.set_readiness(Readiness.CLOSED, "node shutdown")

    def local_endpoints(self) -> list[str]:
        r = self.client.relayed if self.client else None
        return [f"{r[0]}:{r[1]}"] if r else []

    def candidates(self) -> list[str]:
        return self.local_endpoints()

    def endpoint_for(self, peer_key: bytes) -> Any:
        return self.peers.get(peer_key) if self.client is not None else None

    def describe(self) -> dict[str, Any]:
        servers = []
        for spec, _ in self.servers:
            key = f"{spec.host}:{spec.port}"
            d: dict[str, Any] = {"server": key, "transport": spec.transport,
                                 "announced": any(spec == a for a, _ in self.announced),
                                 "rtt_ms": (round(self.measured[key] * 1000, 2)
                                            if key in self.measured else None),
                                 "error": self.errors.get(key)}
            if self.client is not None and self.client.spec == spec:
                d.update(self.client.describe())
                d["selected"] = True
            servers.append(d)
        return {"ready": self.readiness is Readiness.READY,
                "relayed": next(iter(self.local_endpoints()), None), "servers": servers}

    def set_announced(self, servers: list[tuple[ServerSpec, Callable[[], Credentials]]]
                      ) -> None:
        """Servers the coordination server announced (with their credential factories);
        one the node configured itself wins. Without an allocation, tries them at once."""
        mine = {spec for spec, _ in self.configured}
        self.announced = [(spec, creds) for spec, creds in servers if spec not in mine]
        self.servers = self.configured + self.announced
        self._changed.set()

    # ------------------------------------------------------------ allocation
    async def _try(self, spec: ServerSpec, creds: Callable[[], Credentials]
                   ) -> TurnClient | None:
        key = f"{spec.host}:{spec.port}"
        client = TurnClient(spec, creds, self._on_data, tls_context=self.tls_context)
        try:
            await client.connect()
            await client.allocate()
        except TurnFailed as e:
            self.errors[key] = str(e.failure)
        except ssl.SSLCertVerificationError as e:
            self.errors[key] = (f"TLS certificate not trusted ({e.verify_message}); give its CA "
                                "in [plugin.turn] ca_file")
        except (OSError, TimeoutError) as e:
            self.errors[key] = f"unreachable: {e.strerror or e}" if isinstance(e, OSError) \
                else "unreachable: no answer"
        else:
            self.errors.pop(key, None)
            self.measured[key] = client.rtt or 0.0
            return client
        log.warning("turn %s: %s", spec, self.errors[key])
        client.close_now()
        return None

    async def _run(self) -> None:
        delay = RETRY_MIN
        while True:
            self._changed.clear()
            got = await asyncio.gather(*(self._try(s, c) for s, c in self.servers))
            ok = sorted((c for c in got if c is not None), key=lambda c: c.rtt or 0.0)
            for extra in ok[1:]:
                await extra.close()
            if ok:
                self.client = best = ok[0]
                delay = RETRY_MIN
                log.info("turn: using %s (rtt %.1f ms of %d server(s))", best.spec,
                         (best.rtt or 0) * 1000, len(self.servers))
                for key, addr in list(self.peers.items()):
                    self._watch(addr)
                # READY: the core announces the relayed address (``candidates``) again
                self.set_readiness(Readiness.READY, f"allocated on {best.spec}")
                await best.maintain()          # returns when the allocation is lost
                self.set_readiness(Readiness.LOST, best.error or "allocation lost")
                best.close_now()
                self.client = None
            else:
                self.set_readiness(Readiness.LOST if self.readiness is not Readiness.STARTING
                                   else Readiness.STARTING,
                                   "; ".join(self.errors.values()) or "no TURN server yet")
            # back off, but a change in the announced servers is tried at once
            try:
                await asyncio.wait_for(self._changed.wait(),
                                       delay * (0.8 + 0.4 * random.random()))
                delay = RETRY_MIN
            except TimeoutError:
                delay = min(RETRY_MAX, delay * 2)

    # ------------------------------------------------------------ peers
    def watch_peer(self, peer_key: bytes, endpoints: list[str], public: str | None) -> None:
        """A peer's announced candidates: permissions for its IPs, a channel to its relay."""
        relayed: Addr | None = None
        ips: set[str] = set()
        for e in [*endpoints, *([public] if public else [])]:
            name, sep, text = e.partition("=")
            if sep and name != "turn":
                continue
            try:
                addr = parse_endpoint(text if sep else e)
            except ValueError:
                continue
            if sep:
                relayed = addr
            ips.add(addr[0])
        if relayed is not None and (len(self.peers) < MAX_WATCHED or peer_key in self.peers):
            self.peers[peer_key] = relayed
        c = self.client
        if c is None:
            return
        for ip in sorted(ips):
            if not c.has_permission(ip):
                c.background(c.permit(ip))
        if relayed is not None:
            self._watch(relayed)

    def forget_peer(self, peer_key: bytes) -> None:
        self.peers.pop(peer_key, None)

    def _watch(self, addr: Addr) -> None:
        c = self.client
        if c is None or addr in self._binding:
            return
        self._binding.add(addr)

        async def bind() -> None:
            try:
                await c.bind(addr)
            finally:
                self._binding.discard(addr)

        c.background(bind())

    def _on_data(self, payload: bytes, peer: Addr) -> None:
        if self._receive is None:
            return
        c = self.client
        if c is not None and peer not in c._channels and len(self._binding) < 64:
            self._watch(peer)   # a new address of a peer (e.g. a symmetric NAT's port)
        self._receive(payload, peer)
