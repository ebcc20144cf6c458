"""Frame handlers: what the interface reader does with packets unicast routing misses.

A handler is a plain callable ``handler(packet) -> bool`` registered once at
start-up through ``NodeHandle.register_frame_handler``; it returns True when it
took the packet (e.g. flooded a broadcast to the network's peers). Handlers
run on the data path, so they must be cheap and must not block.
"""

from __future__ import annotations

from collections.abc import Callable

FrameHandler = Callable[[bytes], bool]
