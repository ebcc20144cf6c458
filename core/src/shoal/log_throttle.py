"""Repeated errors logged once per interval, with a count.

Under a flood the same failure happens thousands of times a second (``accept``
out of descriptors, a peer resetting connections); one line per interval says
as much as a million, and keeps the log from filling the disk. The first
occurrence of a kind is logged at once; later ones within ``interval`` are
counted and reported with the next line of that kind. (The standard logging
module has no rate limiting, and a filter could not report the count.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

MAX_KINDS = 256   # distinct kinds tracked (bounded: kinds come from exception types)


class LogThrottle:
    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg`` unless ``kind`` was logged within the interval; True if it was."""
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        if len(self._last) >= MAX_KINDS and kind not in self._last:
            self._last.clear()
            self._suppressed.clear()
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        if n:
            self.logger.log(level, msg + " (and %d more like it in the last %.0f s)",
                            *args, n, now - (last if last is not None else now))
        else:
            self.logger.log(level, msg, *args)
        return True


def install_loop_handler(loop: asyncio.AbstractEventLoop, logger: logging.Logger,
                         interval: float = 10.0) -> LogThrottle:
    """Replace asyncio's default exception handler (a traceback per call) by one
    line per kind and interval. Kinds are the message and the exception type, so
    ``socket.accept() out of system resource`` under descriptor exhaustion is one
    line every ``interval`` seconds instead of a traceback per accept attempt."""
    throttle = LogThrottle(logger, interval)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, asyncio.CancelledError):   # a task cancelled on shutdown: not news
            return
        message = context.get("message", "error in the event loop")
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        kind = f"{message}|{type(exc).__name__ if exc is not None else ''}"
        throttle.log(logging.ERROR, kind, "%s%s", message, f" ({detail})" if detail else "")

    loop.set_exception_handler(handler)
    return throttle
