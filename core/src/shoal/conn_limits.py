"""Bounds on concurrent connections: global and per source address.

A listener asks ``try_open(source)`` before serving a connection and calls
``close(source)`` when it ends; a refused connection is closed at once, so a
flood from one address (or from many) cannot take every descriptor of the
process. ``descriptor_budget`` sizes the defaults from ``RLIMIT_NOFILE`` so the
control port and the relay in one process each keep room of their own.
"""

from __future__ import annotations

import resource
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
