"""The narrow interface between the data plane and whatever carries datagrams.

A transport (UDP socket, relay client, ...) is created by a plugin through
``shoal_transport_create``. The engine calls ``send`` on the data path, so it
must not block: a full socket buffer drops the datagram, as the kernel would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

Endpoint = Any  # a transport's own address type, e.g. ("198.51.100.2", 41641)
Receive = Callable[[bytes, Endpoint], None]


@runtime_checkable
class Transport(Protocol):
    name: str

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        """Bind and start delivering datagrams with ``receive(data, endpoint)``."""

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        """Send one datagram; never blocks (drops when the buffer is full)."""

    def local_endpoints(self) -> list[str]:
        """Addresses this transport listens on, for status and candidate gathering."""

    def close(self) -> None:
        """Stop receiving and release the socket."""
