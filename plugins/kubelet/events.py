"""Events the kubelet reports about pods and nodes (core/v1 Events, like kubelet's recorder).

Repeats of the same (object, type, reason, message) update one Event's ``count`` and
``lastTimestamp`` instead of creating new objects, as client-go's correlator does. Posting is
queued and never blocks or fails the caller: events are informational.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from kybern.client import ApiClient, ApiError
from loguru import logger

log = logger.bind(component="kubelet")

#: forget an aggregated event after this long without repeats (client-go keeps ~10 min)
_DEDUP_TTL_S = 600.0
#: events waiting to be posted; beyond this they are dropped (kubelet's broadcaster: 1000)
_MAX_QUEUE = 1000
#: writes per second to the API, for the whole process (kubelet's --event-qps/--event-burst);
#: a thousand hollow nodes together stay within what one kubelet may send
EVENT_QPS = 50.0
EVENT_BURST = 100


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ref(pod: dict[str, Any], container: str | None = None, init: bool = False) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    ref = {
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if container:
        ref["fieldPath"] = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
    return ref


class EventRecorder:
    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], str, str, str]] = asyncio.Queue(_MAX_QUEUE)
        #: dedup key -> (event name, namespace, count, last seen)
        self._seen: dict[tuple[Any, ...], tuple[str, str, int, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kubelet-events")

    async def stop(self) -> None:
        if self._task is not None:
            # give queued events a moment to go out (a pod's last Killing, ...)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), 2)
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def full(self) -> bool:
        """Whether an event emitted now would be dropped: callers skip building it (a burst
        of pod starts on a thousand hollow nodes emits far more than the recorder may post)."""
        return self._queue.full()

    def emit(self, host: str, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((host, ref, type_, reason, message))
        except asyncio.QueueFull:
            log.debug("event queue full; dropping {} {}", reason, message)

    async def _run(self) -> None:
        tokens = float(EVENT_BURST)
        last = time.monotonic()
        while True:
            item = await self._queue.get()
            now = time.monotonic()
            tokens = min(float(EVENT_BURST), tokens + (now - last) * EVENT_QPS)
            last = now
            if tokens < 1:
                await asyncio.sleep((1 - tokens) / EVENT_QPS)
                tokens, last = 1.0, time.monotonic()
            tokens -= 1
            try:
                await self._post(*item)
            except Exception as exc:  # events must never take the kubelet down
                log.debug("posting event failed: {}", exc)
            finally:
                self._queue.task_done()

    async def _post(self, host: str, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        now = time.time()
        stamp = now_rfc3339()
        namespace = ref.get("namespace") or "default"
        key = (ref.get("uid"), ref.get("fieldPath"), type_, reason, message, host)
        if len(self._seen) > 5000:
            self._seen = {k: v for k, v in self._seen.items() if now - v[3] < _DEDUP_TTL_S}
        seen = self._seen.get(key)
        if seen is not None and now - seen[3] < _DEDUP_TTL_S:
            name, ns, count, _ = seen
            try:
                await self._api.patch(
                    "events", name, {"count": count + 1, "lastTimestamp": stamp}, namespace=ns
                )
                self._seen[key] = (name, ns, count + 1, now)
                return
            except ApiError as exc:
                if not exc.not_found:
                    raise
        name = f"{ref.get('name')}.{uuid.uuid4().hex[:16]}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {k: v for k, v in ref.items() if v is not None},
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "kubelet", "host": host},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": host,
        }
        await self._api.create("events", event, namespace=namespace)
        self._seen[key] = (name, namespace, 1, now)
