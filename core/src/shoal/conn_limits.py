"""Bounds on concurrent connections: global and per source address.

A listener asks ``try_open(source)`` before serving a connection and calls
``close(source)`` when it ends; a refused connection is closed at once, so a
flood from one address (or from many) cannot take every descriptor of the
process. ``HandshakeSlots`` bounds the connections still in their handshake,
shedding the oldest rather than refusing newcomers. ``descriptor_budget`` sizes the defaults from ``RLIMIT_NOFILE`` so the
control port and the relay in one process each keep room of their own.
"""

from __future__ import annotations

import resource
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


def raise_nofile_limit() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def descriptor_budget(share: float) -> int:
    """``share`` of the process's descriptor limit, keeping 64 for files and sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, int((soft - 64) * share))


@dataclass
class ConnectionLimits:
    max_total: int
    max_per_source: int
    total: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    refused_total: int = 0
    refused_source: int = 0

    def try_open(self, source: str) -> bool:
        if self.total >= self.max_total:
            self.refused_total += 1
            return False
        n = self.per_source.get(source, 0)
        if n >= self.max_per_source:
            self.refused_source += 1
            return False
        self.per_source[source] = n + 1
        self.total += 1
        return True

    def close(self, source: str) -> None:
        n = self.per_source.get(source, 0) - 1
        if n <= 0:
            self.per_source.pop(source, None)   # the table shrinks back after a flood
        else:
            self.per_source[source] = n
        self.total = max(0, self.total - 1)


class HandshakeSlots:
    """Connections still in their handshake: at most ``max_total`` at once and
    ``max_per_source`` per source address.

    A full table does not refuse the newcomer: it sheds the oldest handshake (of
    that source when the source is at its own cap, of anyone otherwise), so a
    flood of connections that never finish their handshake only pushes out
    its own stale ones, and an honest node's handshake, which completes within
    a round trip or two, gets through. ``enter`` returns a token for ``leave``;
    ``abort`` closes a shed connection.
    """

    def __init__(self, max_total: int, max_per_source: int) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._all: OrderedDict[int, tuple[str, Callable[[], None]]] = OrderedDict()
        self._by_source: dict[str, OrderedDict[int, None]] = {}
        self._next = 0
        self.shed = 0

    @property
    def total(self) -> int:
        return len(self._all)

    def enter(self, source: str, abort: Callable[[], None]) -> int:
        mine = self._by_source.get(source)
        if mine is not None and len(mine) >= self.max_per_source:
            self._shed(next(iter(mine)))
        if len(self._all) >= self.max_total:
            self._shed(next(iter(self._all)))
        self._next += 1
        self._all[self._next] = (source, abort)
        self._by_source.setdefault(source, OrderedDict())[self._next] = None
        return self._next

    def leave(self, token: int) -> None:
        entry = self._all.pop(token, None)
        if entry is None:
            return
        mine = self._by_source[entry[0]]
        del mine[token]
        if not mine:
            del self._by_source[entry[0]]   # the table shrinks back after a flood

    def _shed(self, token: int) -> None:
        abort = self._all[token][1]
        self.leave(token)
        self.shed += 1
        abort()
