"""Password hashing pool: bounded, and fair between sources."""

import asyncio
import threading
import time

import pytest

from shoal.server.hash_pool import FairHashPool
from shoal.server.rate_limits import RateLimited


def test_round_robin_between_sources_and_bounds():
    order: list[str] = []
    lock = threading.Lock()

    def work(tag: str) -> str:
        time.sleep(0.01)
        with lock:
            order.append(tag)
        return tag

    async def main() -> None:
        pool = FairHashPool(workers=1, per_source=4, total=8)
        flood = [asyncio.ensure_future(pool.run("flood", work, f"f{i}")) for i in range(5)]
        await asyncio.sleep(0)
        honest = asyncio.ensure_future(pool.run("honest", work, "h"))
        with pytest.raises(RateLimited, match="try again in"):
            await pool.run("flood", work, "too many")           # per-source bound
        await asyncio.gather(*flood, honest)
        pool.close()

    asyncio.run(main())
    # the honest job ran right after the flood's first, not after all five
    assert order.index("h") <= 2, order


def test_total_bound():
    async def main() -> None:
        pool = FairHashPool(workers=1, per_source=10, total=2)
        jobs = [asyncio.ensure_future(pool.run(f"s{i}", time.sleep, 0.01)) for i in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimited):
            await pool.run("late", time.sleep, 0)
        await asyncio.gather(*jobs)
        pool.close()

    asyncio.run(main())
