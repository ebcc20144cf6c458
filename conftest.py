"""Suite-wide: a terminated test run (SIGTERM, e.g. from ``timeout`` or a CI time
limit) still tears its labs down.

Python's default for SIGTERM ends the process at once, skipping every fixture
finalizer and ``with Lab(...)`` exit, which would leave network namespaces and
shoal processes behind. As a KeyboardInterrupt it unwinds like Ctrl-C: pytest
runs the teardowns, and the labs stop their processes (by PID) and delete
their namespaces.
"""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def pytest_configure() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
