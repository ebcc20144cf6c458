"""A token bucket: the per-node limit on flooded packets (storm protection).

One token per flooded packet (not per copy: the copies of one packet are one
decision). Tokens accrue at ``rate`` per second up to ``burst``. Time is
passed in, never read here.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means drop the packet."""
        t = self.tokens
        if now > self.last:
            t += (now - self.last) * self.rate
            t = min(t, self.burst)
            self.last = now
        if t >= 1.0:
            self.tokens = t - 1.0
            return True
        self.tokens = t
        return False
