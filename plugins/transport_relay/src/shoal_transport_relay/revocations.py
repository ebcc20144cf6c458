"""Telling standalone relays about revocations as they happen.

The relay inside the coordination server drops a node's registration the
moment it logs out or loses a network. A standalone relay (``shoal relay run``,
announced in ``[plugin.relay] announce``) shares only the grant secret with
the server; without word from the server it would honour the node's old grant
until it lapses (``grant_lifetime``). So the server sends each announced
relay a REVOKE (``protocol.encode_revoke``, MAC'd with the shared secret)
over UDP, or over TCP for a relay announced with TCP only, and repeats it with
backoff until the relay confirms with REVOKED. Pushes in flight are bounded;
one that is never confirmed still ends when the grant lapses, and is logged
(once per interval).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence

from shoal.config import parse_endpoint
from shoal.log_throttle import LogThrottle

from shoal_transport_relay import protocol as p

log = logging.getLogger(__name__)

ATTEMPTS = 5
FIRST_WAIT = 0.25          # seconds; doubled at each attempt (about 8 s in all)
MAX_IN_FLIGHT = 4096


class _Replies(asyncio.DatagramProtocol):
    def __init__(self, pusher: RevocationPusher) -> None:
        self.pusher = pusher

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= p.REVOKED_HEAD.size and data[:3] == b"SR\x09":
            ts_ms = p.REVOKED_HEAD.unpack_from(data)[2]
            waiter = self.pusher._waiting.get((addr, ts_ms))
            if waiter is not None and not waiter[1].done() \
                    and p.check_revoked(self.pusher.secret, waiter[0], ts_ms, data):
                waiter[1].set_result(None)

    def error_received(self, exc: Exception) -> None:   # ICMP unreachable: retried
        pass


class RevocationPusher:
    """Pushes revocations to the relays at ``relays`` (``(udp, tcp)`` endpoints)."""

    def __init__(self, secret: bytes, relays: Sequence[tuple[str | None, str | None]]) -> None:
        self.secret = secret
        self.relays = [(parse_endpoint(u) if u else None, parse_endpoint(t) if t else None)
                       for u, t in relays if u or t]
        self._udp: asyncio.DatagramTransport | None = None
        self._waiting: dict[tuple[tuple[str, int], int], tuple[bytes, asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_ts = 0
        self.throttle = LogThrottle(log)
        self.confirmed = 0
        self.unconfirmed = 0
        self.skipped = 0

    def revoke(self, key: bytes, wall: float | None = None) -> None:
        """Push the revocation of ``key`` (at ``wall``, default now) to every relay."""
        at = int(time.time() if wall is None else wall)
        for udp, tcp in self.relays:
            if len(self._tasks) >= MAX_IN_FLIGHT:
                self.skipped += 1
                self.throttle.log(logging.WARNING, "revocations backlog",
                                  "relay revocations: %d pushes in flight; this one is left "
                                  "to the grant's expiry", len(self._tasks))
                continue
            task = asyncio.ensure_future(self._push(key, at, udp, tcp))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _ts(self) -> int:
        self._last_ts = max(self._last_ts + 1, int(time.time() * 1000))
        return self._last_ts

    async def _push(self, key: bytes, at: int, udp: tuple[str, int] | None,
                    tcp: tuple[str, int] | None) -> None:
        wait = FIRST_WAIT
        where = udp or tcp
        for _ in range(ATTEMPTS):
            ts_ms = self._ts()
            msg = p.encode_revoke(self.secret, key, at, ts_ms)
            try:
                if udp is not None:
                    ok = await self._over_udp(udp, key, ts_ms, msg, wait)
                else:
                    assert tcp is not None
                    ok = await self._over_tcp(tcp, key, ts_ms, msg, wait)
            except OSError:
                ok = False
                await asyncio.sleep(wait)
            if ok:
                self.confirmed += 1
                return
            wait *= 2
        self.unconfirmed += 1
        self.throttle.log(logging.WARNING, f"revoke {where}",
                          "relay %s:%d did not confirm a revocation; the node's grant there "
                          "lapses on its own", *where)

    async def _over_udp(self, addr: tuple[str, int], key: bytes, ts_ms: int, msg: bytes,
                        wait: float) -> bool:
        if self._udp is None:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Replies(self), family=socket.AF_INET)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[(addr, ts_ms)] = (key, fut)
        try:
            self._udp.sendto(msg, addr)
            await asyncio.wait_for(fut, wait)
            return True
        except TimeoutError:
            return False
        finally:
            del self._waiting[(addr, ts_ms)]

    async def _over_tcp(self, addr: tuple[str, int], key: bytes, ts_ms: int, msg: bytes,
                        wait: float) -> bool:
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(*addr)
            try:
                writer.write(len(msg).to_bytes(2, "big") + msg)
                n = int.from_bytes(await reader.readexactly(2), "big")
                return await reader.readexactly(n)
            finally:
                writer.transport.abort()

        try:
            reply = await asyncio.wait_for(exchange(), max(wait, 2.0))
        except (TimeoutError, asyncio.IncompleteReadError):
            return False
        return p.check_revoked(self.secret, key, ts_ms, reply)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._udp is not None:
            self._udp.close()
