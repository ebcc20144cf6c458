"""Property-based fuzzing of parsers with hypothesis: a modest run in CI, a long
one from ``scripts/fuzz.sh``.

``@parser_fuzz(strategy, ...)`` turns ``fn(*examples)`` into a pytest test. In
CI it runs ``CI_EXAMPLES`` examples. With ``SHOAL_FUZZ_SECONDS=N`` it keeps
drawing fresh batches for N seconds and appends one line of figures (examples,
wall-clock and CPU seconds, failures) to ``SHOAL_FUZZ_REPORT`` if set. A failure raises as usual,
with hypothesis' shrunk example, so it can be pasted as a regression test.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

CI_EXAMPLES = 100
BATCH = 200
_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
}


def parser_fuzz(*strategies: SearchStrategy[Any]) -> Callable[[Callable[..., None]],
                                                            Callable[[], None]]:
    def deco(fn: Callable[..., None]) -> Callable[[], None]:
        calls = [0]

        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> None:
            calls[0] += 1
            fn(*args, **kwargs)

        ci = settings(max_examples=CI_EXAMPLES, **_COMMON)(given(*strategies)(counted))
        batch = settings(max_examples=BATCH, database=None, **_COMMON)(
            given(*strategies)(counted))

        @functools.wraps(fn)
        def test() -> None:
            budget = float(os.environ.get("SHOAL_FUZZ_SECONDS", "0") or 0)
            if budget <= 0:
                ci()
                return
            start = time.monotonic()
            cpu = time.process_time()
            calls[0] = 0
            failed = "passed"
            try:
                while time.monotonic() - start < budget:
                    batch()
            except BaseException:
                failed = "FAILED"
                raise
            finally:
                report = os.environ.get("SHOAL_FUZZ_REPORT")
                line = (f"{fn.__module__}.{fn.__name__}: {calls[0]} examples in "
                        f"{time.monotonic() - start:.0f} s "
                        f"({time.process_time() - cpu:.0f} s CPU), {failed}\n")
                if report:
                    with open(report, "a") as f:
                        f.write(line)

        # pytest must not see the strategies' arguments as fixtures
        del test.__wrapped__
        return test
    return deco
