"""Rate limits for the unauthenticated and expensive paths of the server (sans-IO).

Every limit is "at most N events per window" for one key (a source address, a
(source, network) pair, a network), counted in a sliding window. Going over
the limit locks the key out: for one window the first time, then twice as
long each time it is hit again before a quiet period of four windows has
passed (backoff, capped at ``MAX_LOCKOUT``). A refusal carries the number of
seconds until the key may try again, so the error can say "try again in N s".

Tables are bounded: keys whose window and lockout have passed are dropped by
``sweep`` (called periodically) and, when a table is full, at once; a flood
of fresh keys evicts the oldest entries instead of growing memory.

Written here rather than taken from a library: the maintained ones (limits,
aiolimiter) count or pace events but have neither lockout with backoff nor an
injected clock for sans-IO tests, and this is a page of code.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

MAX_LOCKOUT = 3600.0
MAX_KEYS = 100_000


class RateLimited(Exception):
    """Refused by a limit; ``retry_after`` is in whole seconds (at least 1)."""

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"{what}; try again in {self.retry_after} s")


@dataclass
class _Entry:
    events: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    strikes: int = 0
    last_strike: float = 0.0


@dataclass
class WindowLimiter:
    limit: int
    window: float
    max_keys: int = MAX_KEYS
    _keys: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)

    def retry_after(self, key: Hashable, now: float) -> float:
        """0 if ``key`` may go ahead now, else seconds to wait (nothing is counted)."""
        e = self._keys.get(key)
        if e is None:
            return 0.0
        if e.locked_until > now:
            return e.locked_until - now
        self._trim(e, now)
        return 0.0

    def hit(self, key: Hashable, now: float) -> float:
        """Count one event; returns the lockout (seconds) if this event reached the limit."""
        e = self._keys.get(key)
        if e is None:
            if len(self._keys) >= self.max_keys:
                self.sweep(now)
                while len(self._keys) >= self.max_keys:
                    self._keys.popitem(last=False)
            e = self._keys[key] = _Entry()
        else:
            self._keys.move_to_end(key)
        self._trim(e, now)
        e.events.append(now)
        if len(e.events) < self.limit:
            return 0.0
        if now - e.last_strike > 4 * self.window:
            e.strikes = 0
        lock = min(MAX_LOCKOUT, self.window * (2 ** e.strikes))
        e.strikes += 1
        e.last_strike = now
        e.locked_until = now + lock
        e.events.clear()
        return lock

    def check_and_hit(self, key: Hashable, now: float, what: str) -> None:
        """Refuse (RateLimited) while locked out; otherwise count the event."""
        wait = self.retry_after(key, now)
        if wait > 0:
            raise RateLimited(what, wait)
        self.hit(key, now)

    def clear(self, key: Hashable) -> None:
        self._keys.pop(key, None)

    def _trim(self, e: _Entry, now: float) -> None:
        while e.events and now - e.events[0] >= self.window:
            e.events.popleft()

    def sweep(self, now: float) -> None:
        for key in [k for k, e in self._keys.items()
                    if e.locked_until <= now and now - e.last_strike > 4 * self.window
                    and (not e.events or now - e.events[-1] >= self.window)]:
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class ServerLimits:
    """All of the server's admission limits, from ``[limits]`` in server.toml."""

    logins: WindowLimiter               # logins per source address
    registrations: WindowLimiter        # new keys registered per source address
    password_source: WindowLimiter      # wrong passwords per (source, network)
    password_network: WindowLimiter     # wrong passwords per network, all sources

    @classmethod
    def from_config(cls, c: object) -> ServerLimits:
        w = float(c.window)  # type: ignore[attr-defined]
        return cls(WindowLimiter(c.logins_per_source, w),  # type: ignore[attr-defined]
                   WindowLimiter(c.registrations_per_source, w),  # type: ignore[attr-defined]
                   WindowLimiter(c.password_failures_per_source, w),  # type: ignore[attr-defined]
                   WindowLimiter(c.password_failures_per_network, w))  # type: ignore[attr-defined]

    def check_password(self, source: str, network: str, now: float) -> None:
        """Before hashing a password attempt: refuse while the source or network is locked."""
        wait = max(self.password_source.retry_after((source, network), now),
                   self.password_network.retry_after(network, now))
        if wait > 0:
            raise RateLimited(f"too many wrong passwords for network {network!r}", wait)

    def password_result(self, source: str, network: str, ok: bool, now: float) -> None:
        if ok:
            self.password_source.clear((source, network))
            return
        self.password_source.hit((source, network), now)
        self.password_network.hit(network, now)

    def sweep(self, now: float) -> None:
        for lim in (self.logins, self.registrations, self.password_source,
                    self.password_network):
            lim.sweep(now)
