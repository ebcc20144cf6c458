"""Sending a WebSocket message from the data path without awaiting.

``websockets``' ``Connection.send`` is a coroutine (it waits for the socket to
drain); the engine's ``send`` is a plain call that must never block and drops
when the buffer is full, like a UDP socket. So a message is framed by the
connection's sans-IO protocol and written to its transport directly; the
library's own pings and close frames go through the same protocol object, on
the same event loop thread, so frames never interleave.
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import State

#: Bytes queued in one connection before further messages are dropped (~170 full packets).
WRITE_BUFFER_MAX = 256 * 1024


def write_now(ws: Any, message: bytes) -> None:
    """Queue one binary message on ``ws`` (a websockets asyncio connection); OSError if not."""
    if ws.protocol.state is not State.OPEN:
        raise OSError("the WebSocket connection is closing")
    transport = ws.transport
    if transport.get_write_buffer_size() > WRITE_BUFFER_MAX:
        raise OSError("the WebSocket send buffer is full")
    ws.protocol.send_binary(message)
    for data in ws.protocol.data_to_send():
        transport.write(data)
