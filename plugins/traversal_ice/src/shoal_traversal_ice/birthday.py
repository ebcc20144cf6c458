"""Birthday punching against an address-and-port-dependent (symmetric) NAT, sans-IO.

When one side's NAT maps every destination to a new random port and the
other side's NAT is endpoint-independent but filters by address and port
(port-restricted), neither side's single socket can be found by the other.
So the symmetric side opens ``sockets`` extra sockets and pings the other
side's stable public endpoint from each (``Opener``): that creates that many
random external ports, each accepting packets from exactly that endpoint. The
port-restricted side pings random ports of the symmetric side's public IP
(``Sprayer``), which also opens its own filter for each of them. With K open
ports out of P possible and N probes, a hit is likely once K*N is a few times
P (P(miss) ~ exp(-K*N/P)); 256 x 2048 over 64512 ports misses 3e-4 of the
time. Both are bounded (budget) and paced, and stop on the first success.
"""

from __future__ import annotations

import random
from collections.abc import Callable

PORT_MIN, PORT_MAX = 1024, 65535


class Sprayer:
    def __init__(self, ip: str, budget: int = 2048, rate: float = 1000.0,
                 rng: Callable[[int, int], int] = random.randint) -> None:
        self.ip = ip
        self.budget = budget
        self.rate = rate
        self.rng = rng
        self.sent = 0
        self.started: float | None = None
        self.stopped = False

    def due(self, now: float) -> list[tuple[str, int]]:
        if self.stopped or self.sent >= self.budget:
            return []
        if self.started is None:
            self.started = now
        allowed = min(self.budget, int((now - self.started) * self.rate) + 1)
        out = [(self.ip, self.rng(PORT_MIN, PORT_MAX)) for _ in range(allowed - self.sent)]
        self.sent = allowed
        return out

    @property
    def done(self) -> bool:
        return self.stopped or self.sent >= self.budget


class Opener:
    """Which extra sockets should ping the target now (indices), ``rounds`` times each."""

    def __init__(self, sockets: int = 256, rounds: int = 6, round_time: float = 0.5) -> None:
        self.sockets = sockets
        self.rounds = rounds
        self.round_time = round_time
        self.sent = 0
        self.started: float | None = None
        self.stopped = False

    def due(self, now: float) -> list[int]:
        total = self.sockets * self.rounds
        if self.stopped or self.sent >= total:
            return []
        if self.started is None:
            self.started = now
        rate = self.sockets / self.round_time
        allowed = min(total, int((now - self.started) * rate) + 1)
        out = [i % self.sockets for i in range(self.sent, allowed)]
        self.sent = allowed
        return out

    @property
    def done(self) -> bool:
        return self.stopped or self.sent >= self.sockets * self.rounds
