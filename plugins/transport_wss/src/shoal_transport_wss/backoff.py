"""Reconnect delays: exponential with jitter, reset by a connection that worked (sans-IO).

Jitter keeps a fleet of nodes behind one proxy from reconnecting in lockstep
after the relay restarts. The cap is short because a WSS node usually has no
other path: once the proxy is back, the path should be back within seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = 5.0, factor: float = 2.0,
                 rand: Callable[[], float] = random.random) -> None:
        self.first, self.cap, self.factor = first, cap, factor
        self._rand = rand
        self._next = first

    def delay(self) -> float:
        """The delay before the next attempt (grows after each call), jittered by ±25%."""
        d = self._next
        self._next = min(self.cap, self._next * self.factor)
        return d * (0.75 + 0.5 * self._rand())

    def reset(self) -> None:
        self._next = self.first
