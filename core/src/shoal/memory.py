"""Giving memory back to the system once a flood is over.

A server or relay facing the internet may hold thousands of connections for a
few seconds (a flood of stalled handshakes) and then only its usual few. The
objects of those connections are freed, but CPython's small-object allocator
(pymalloc) returns a 1 MiB arena only when every object in it is gone, and a
flood's arenas stay pinned by the few long-lived objects allocated among them.
With the C library's allocator instead, ``malloc_trim(0)`` hands every free
page back. Measured in one process, four floods of 8,000 stalled control
connections in a row: pymalloc 53 MiB before, 77-82 MiB after each flood; the
C allocator 54 MiB before, 57-58 MiB after each.

The C allocator's threshold for giving large blocks their own mapping moves
up as such blocks are freed, after which the password hashing's 16 MiB scrypt
buffers stay in the heap; a fixed threshold (``MALLOC_MMAP_THRESHOLD_``) keeps
them mapped and unmapped. ``bench/control_plane.py --nodes 1000``, server RSS
once every node has joined: pymalloc 154 MiB, the C allocator 181 MiB, with
the fixed threshold 133 MiB.

So the long-running services (``shoal server run``, ``shoal relay run``) start
again under ``PYTHONMALLOC=malloc`` and ``MALLOC_MMAP_THRESHOLD_=1048576`` when
launched from the command line (not when ``PYTHONMALLOC`` is already set, nor
when called in-process), and call ``give_back()`` when their connection count
has fallen far below its peak.
There is no maintained library for this; it is a few lines around libc.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

MMAP_THRESHOLD = 1 << 20   # bytes: blocks this large get their own mapping

#: set by ``shoal.cli.main`` when it runs as the ``shoal`` command (not in-process)
FROM_COMMAND_LINE = False


def prefer_system_malloc() -> None:
    """Re-run this command under ``PYTHONMALLOC=malloc`` (same PID, same arguments)."""
    if not FROM_COMMAND_LINE or os.environ.get("PYTHONMALLOC"):
        return
    os.environ["PYTHONMALLOC"] = "malloc"
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    try:
        os.execv(sys.executable, [sys.executable, "-m", "shoal", *sys.argv[1:]])
    except OSError:
        del os.environ["PYTHONMALLOC"]   # carry on with pymalloc


def give_back() -> None:
    """Collect garbage and return freed heap pages to the system (glibc; else a no-op)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakWatch:
    """Says when a count (open connections) has fallen a long way since the last look:
    time to ``give_back()``. Asked at a steady pace (every 10 s); a flood that ends in
    steps (refused at once, then stalled handshakes timing out) fires at each step."""

    def __init__(self, slack: int = 500) -> None:
        self.peak = 0
        self.slack = slack

    def see(self, n: int) -> None:
        self.peak = max(self.peak, n)

    def fallen(self, n: int) -> bool:
        """True if the count fell by ``slack`` or more from its high since the last call."""
        fired = self.peak - n >= self.slack
        self.peak = n
        return fired
