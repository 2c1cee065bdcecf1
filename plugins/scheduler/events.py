"""The scheduler's event broadcaster: Events leave the scheduling path at once and are written
in the background, as client-go's EventBroadcaster does for kube-scheduler.

A burst of 10,000 bindings must not wait for (or queue behind) 10,000 Event writes: ``record``
only appends to a bounded queue (client-go's ``maxQueuedEvents``, 1000) and one writer task
sends them in order. When the queue is full the event is dropped and counted, as client-go
drops when its broadcaster channel is full. Two filters of client-go's correlator apply
before queueing: a token bucket per involved object (burst 25, then one per 5 minutes, the
``EventSourceObjectSpamFilter``) and, for an event identical to one already written (same
object, type, reason and message), a PATCH of its ``count``/``lastTimestamp`` instead of a
new Event (what ``kubectl describe`` shows as ``(x3 over 2m)``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from contextlib import suppress
from datetime import UTC, datetime

from kybern.client import ApiClient, ApiError
from kybern.scheduling import PodInfo
from loguru import logger

log = logger.bind(component="scheduler")

#: events waiting to be written (client-go's maxQueuedEvents)
MAX_QUEUED = 1000
#: spam filter per involved object: burst, then one token every REFILL_S (client-go's defaults)
SPAM_BURST = 25
SPAM_REFILL_S = 300.0
#: remembered events (for count updates) and spam buckets, like client-go's LRU caches
CACHE_SIZE = 4096
#: at most one "dropped" warning per this many seconds
DROP_LOG_S = 10.0


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventBroadcaster:
    """Records core/v1 Events about pods for one component without blocking the caller."""

    def __init__(self, client: ApiClient, component: str, max_queued: int = MAX_QUEUED) -> None:
        self.client = client
        self.component = component
        self.max_queued = max_queued
        self._queue: deque[tuple[PodInfo, str, str, str, str]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._written: OrderedDict[tuple[str, str, str, str], tuple[str, int]] = OrderedDict()
        self._idle = asyncio.Event()
        self._idle.set()
        #: events dropped because the queue was full, or by the spam filter
        self.dropped = 0
        self.filtered = 0
        self.written = 0
        self._dropped_logged_at = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scheduler-events")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task

    async def flush(self) -> None:
        """Until every queued event has been written (tests)."""
        await self._idle.wait()

    def record(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        """Queue an event about ``pod``; never blocks, never raises."""
        if not self._allow(pod.uid or pod.key):
            self.filtered += 1
            return
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged_at >= DROP_LOG_S:
                self._dropped_logged_at = now
                log.warning("event queue full ({}): {} events dropped so far", self.max_queued, self.dropped)
            return
        self._queue.append((pod, type_, reason, message[:1024], now_rfc3339()))
        self._idle.clear()
        self._wake.set()

    def _allow(self, key: str) -> bool:
        """client-go's spam filter: a token bucket per involved object."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL_S)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > CACHE_SIZE:
            self._buckets.popitem(last=False)
        return allowed

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue.popleft()
            try:
                await self._write(*item)
                self.written += 1
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if not exc.not_found:  # the namespace went away meanwhile
                    log.warning("cannot record event for {}: {}", item[0].key, exc)
            except Exception as exc:
                log.warning("cannot record event for {}: {!r}", item[0].key, exc)

    async def _write(self, pod: PodInfo, type_: str, reason: str, message: str, stamp: str) -> None:
        key = (pod.uid or pod.key, type_, reason, message)
        seen = self._written.pop(key, None)
        if seen is not None:
            name, count = seen
            try:
                await self.client.patch(
                    "events",
                    name,
                    {"count": count + 1, "lastTimestamp": stamp},
                    patch_type="strategic",
                    namespace=pod.namespace,
                )
                self._remember(key, name, count + 1)
                return
            except ApiError as exc:
                if not exc.not_found:
                    raise
        name = f"{pod.name}.{time.time_ns():x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": pod.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
                "resourceVersion": (pod.obj.get("metadata") or {}).get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self.client.create("events", event, namespace=pod.namespace)
        self._remember(key, name, 1)

    def _remember(self, key: tuple[str, str, str, str], name: str, count: int) -> None:
        self._written[key] = (name, count)
        if len(self._written) > CACHE_SIZE:
            self._written.popitem(last=False)
