"""Rate-limited work queues, client-go style, for controllers' keys (``namespace/name``).

The guarantees controllers rely on: a key queued many times before a worker takes it is
processed once (dedup); a key is never processed by two workers at once (one that changes
while being processed is queued again when ``done`` is called); failures retry with per-key
exponential back-off (5 ms doubling to 1000 s) and an overall token bucket (10/s, burst 100),
whichever is slower; ``forget`` resets a key's back-off after a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

from loguru import logger

log = logger.bind(component="workqueue")

T = TypeVar("T", bound=Hashable)


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds to wait before the item's next try (counts a failure)."""
        ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base * 2**failures, capped: client-go's per-item limiter (5 ms .. 1000 s by default)."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        if n > 60:
            return self.max_delay
        return min(self.base_delay * (2**n), self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket over all items (qps, burst): bounds retries of many failing keys."""

    def __init__(self, qps: float = 10.0, burst: int = 100) -> None:
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()

    def when(self, item: Hashable) -> float:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    """client-go's DefaultControllerRateLimiter: per-item 5 ms..1000 s, overall 10 qps burst 100."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100))


class RateLimitingQueue(Generic[T]):
    """Work queue with dedup, exclusive processing, delayed adds and rate-limited retries.

    Use: ``item = await q.get()`` (None once shut down), process, then ``q.done(item)``;
    on failure ``q.add_rate_limited(item)``, on success ``q.forget(item)``.
    """

    def __init__(self, rate_limiter: RateLimiter | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiting: dict[T, asyncio.TimerHandle] = {}
        self._waiting_at: dict[T, float] = {}
        self._cond = asyncio.Condition()
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: T) -> None:
        """Queue ``item`` unless it is already queued; if it is being processed, after ``done``."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._cond:
                self._cond.notify()

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(wake())

    def add_after(self, item: T, delay: float) -> None:
        """Queue ``item`` in ``delay`` seconds (an earlier pending add wins)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        pending = self._waiting_at.get(item)
        if pending is not None and pending <= at:
            return
        if item in self._waiting:
            self._waiting[item].cancel()

        def fire() -> None:
            self._waiting.pop(item, None)
            self._waiting_at.pop(item, None)
            self.add(item)

        self._waiting[item] = loop.call_at(at, fire)
        self._waiting_at[item] = at

    def add_rate_limited(self, item: T) -> None:
        """Retry ``item`` after its back-off (counts a failure)."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """The item succeeded: reset its back-off."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    async def get(self) -> T | None:
        """The next item (marked processing), or None when the queue is shut down and empty."""
        async with self._cond:
            while not self._queue and not self._shutting_down:
                await self._cond.wait()
            if not self._queue:
                return None
            item = self._queue.popleft()
            self._processing.add(item)
            self._dirty.discard(item)
            return item

    def done(self, item: T) -> None:
        """Processing ended; an item re-added meanwhile goes back in the queue now."""
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._notify()

    def shutdown(self) -> None:
        """Stop accepting items and wake all waiting workers (they get None)."""
        self._shutting_down = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._waiting_at.clear()
        self._queue.clear()
        self._dirty.clear()

        async def wake_all() -> None:
            async with self._cond:
                self._cond.notify_all()

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(wake_all())


async def run_workers(
    queue: RateLimitingQueue[T],
    sync: Callable[[T], Awaitable[None]],
    workers: int,
    name: str = "",
    max_retries: int | None = None,
) -> None:
    """Run ``workers`` loops taking items from ``queue`` until it shuts down.

    ``sync`` raising means "retry later" (rate-limited); returning means done (back-off reset).
    With ``max_retries`` an item failing that often is dropped (it comes back with the next
    event or resync).
    """

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            try:
                await sync(item)
            except Exception as exc:
                if max_retries is not None and queue.num_requeues(item) >= max_retries:
                    log.warning("{}: dropping {} after {} retries: {}", name, item, max_retries, exc)
                    queue.forget(item)
                else:
                    log.opt(exception=not _expected(exc)).debug("{}: retrying {}: {}", name, item, exc)
                    queue.add_rate_limited(item)
            else:
                queue.forget(item)
            finally:
                queue.done(item)

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))


def _expected(exc: Exception) -> bool:
    """API errors (conflicts, not found) are routine retries: no traceback for them."""
    from kybern.client import ApiError

    return isinstance(exc, ApiError)
