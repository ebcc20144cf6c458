"""STUN client transactions over any datagram send function (RFC 8489 §6.2.1).

The caller owns the socket: it passes ``send(bytes, addr)`` in and feeds every
STUN message that arrives to ``on_datagram``. That is how NAT discovery
shares the node's own UDP socket with tunnel traffic (the node's demultiplexer
hands over what ``stun.is_stun`` accepts), and how the TURN client runs over
UDP, TCP or TLS alike.

A request is retransmitted with the same transaction id (a TURN server
recognises retransmissions) every ``timeout`` seconds, ``tries`` times; the
round-trip time is measured from the last transmission. Responses are matched
by transaction id and, when the request was sent with a ``source`` check, by
the address they come from; anything else is counted in ``unmatched``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from shoal import stun

Addr = tuple[str, int]
MAX_PENDING = 256          # outstanding transactions (bound)


@dataclass(frozen=True)
class Response:
    message: stun.Message
    source: Addr             # where the response came from
    rtt: float               # seconds, from the last (re)transmission


class StunClient:
    def __init__(self, send: Callable[[bytes, Addr], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.send = send
        self.clock = clock
        self._pending: dict[bytes, tuple[asyncio.Future[Response], float]] = {}
        self.unmatched = 0
        self.malformed = 0

    def on_datagram(self, data: bytes, src: Addr) -> bool:
        """Feed one datagram; False if it is not a well-formed STUN message."""
        try:
            msg = stun.decode(data)
        except stun.StunError:
            self.malformed += 1
            return False
        self.on_message(msg, src)
        return True

    def on_message(self, msg: stun.Message, src: Addr) -> None:
        entry = self._pending.get(msg.transaction_id)
        if entry is None or msg.message_class not in (stun.Class.RESPONSE, stun.Class.ERROR):
            self.unmatched += 1
            return
        fut, sent_at = entry
        if not fut.done():
            fut.set_result(Response(msg, (src[0], src[1]), self.clock() - sent_at))

    async def request(self, msg: stun.Message, dst: Addr, tries: int = 3,
                      timeout: float = 0.25, integrity_key: bytes | None = None
                      ) -> Response | None:
        """Send ``msg`` (encoded here) until answered; None after ``tries`` timeouts."""
        if len(self._pending) >= MAX_PENDING:
            return None
        loop = asyncio.get_running_loop()
        txid = msg.transaction_id
        data = stun.encode(msg, integrity_key)
        fut: asyncio.Future[Response] = loop.create_future()
        try:
            for _ in range(tries):
                self._pending[txid] = (fut, self.clock())
                try:
                    self.send(data, dst)
                except OSError:
                    pass
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    continue
            return None
        finally:
            self._pending.pop(txid, None)
            if not fut.done():
                fut.cancel()
