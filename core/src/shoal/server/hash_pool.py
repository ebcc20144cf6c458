"""Password hashing off the event loop, bounded and fair between sources.

scrypt costs tens of milliseconds of CPU by design. A plain thread pool
serves first come, first served, so one client sending guesses as fast as it
can puts every honest join behind its queue. Here each source address has its
own short queue and the workers take jobs from the sources in turn (round
robin), so a flood from one address costs the others at most one job's wait
per worker; queues are bounded per source and in total, and a job that does
not fit is refused at once with a retry-after instead of waiting.

Only the standard library's thread pool is used: the fairness and the bounds
are what is missing from it, and they take a few lines.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from shoal.server.rate_limits import RateLimited

T = TypeVar("T")


class FairHashPool:
    def __init__(self, workers: int = 2, per_source: int = 4, total: int = 256) -> None:
        self.workers = workers
        self.per_source = per_source
        self.total = total
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="shoal-kdf")
        self._queues: dict[str, deque[tuple[Callable[..., Any], tuple[Any, ...],
                                            asyncio.Future[Any]]]] = {}
        self._turn: deque[str] = deque()
        self._queued = 0
        self._running = 0
        self.refused = 0
        self.done = 0

    @property
    def queued(self) -> int:
        return self._queued

    async def run(self, source: str, fn: Callable[..., T], *args: Any) -> T:
        q = self._queues.get(source)
        if self._queued >= self.total or (q is not None and len(q) >= self.per_source):
            self.refused += 1
            raise RateLimited("the server is busy checking passwords", 1 + self._queued // 8)
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if q is None:
            q = self._queues[source] = deque()
            self._turn.append(source)
        q.append((fn, args, fut))
        self._queued += 1
        self._pump()
        return await fut

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._running < self.workers and self._turn:
            source = self._turn.popleft()
            q = self._queues[source]
            fn, args, fut = q.popleft()
            self._queued -= 1
            if q:
                self._turn.append(source)
            else:
                del self._queues[source]
            if fut.cancelled():
                continue
            self._running += 1
            job = loop.run_in_executor(self._executor, fn, *args)
            job.add_done_callback(lambda j, fut=fut: self._finished(j, fut))

    def _finished(self, job: asyncio.Future[Any], fut: asyncio.Future[Any]) -> None:
        self._running -= 1
        self.done += 1
        if not fut.done():
            if job.exception() is not None:
                fut.set_exception(job.exception())  # type: ignore[arg-type]
            else:
                fut.set_result(job.result())
        self._pump()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
