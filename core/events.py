"""Recording core/v1 Events the way client-go's record package does for kube-controller-manager.

``recorder.event(obj, "Normal", "SuccessfulCreate", "Created pod: web-abc12")`` returns at
once; a background task writes the Event. The same involvedObject + type + reason + message
from the same component again PATCHes the existing Event's ``count`` and ``lastTimestamp``
instead of creating a new one (what ``kubectl describe`` shows as "(x3 over 2m)"). Event names
are ``<object name>.<hex nanoseconds>`` like client-go's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from kybern.client import ApiClient, ApiError
from loguru import logger

log = logger.bind(component="events")

NORMAL = "Normal"
WARNING = "Warning"

# reasons kube-controller-manager uses (pkg/controller/*): shared so controllers spell them alike
SUCCESSFUL_CREATE = "SuccessfulCreate"
FAILED_CREATE = "FailedCreate"
SUCCESSFUL_DELETE = "SuccessfulDelete"
FAILED_DELETE = "FailedDelete"
SCALING_REPLICA_SET = "ScalingReplicaSet"
DEPLOYMENT_ROLLBACK = "DeploymentRollback"
SELECTING_ALL = "SelectingAll"

#: cached (key -> Event) entries for deduplication, like client-go's LRU of 4096
_CACHE_SIZE = 4096


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    """The ObjectReference an Event's involvedObject holds."""
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Writes Events for one component (``source.component`` / ``reportingComponent``)."""

    def __init__(self, client: ApiClient, component: str, host: str | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host or socket.gethostname()
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str] | None] = asyncio.Queue()
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (never blocks, never raises)."""
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._run(), name="event recorder")
            except RuntimeError:
                return
        self._queue.put_nowait((obj, type_, reason, message[:1024]))

    async def flush(self) -> None:
        """Wait until every recorded event has been written (tests, shutdown)."""
        if self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.join(), 5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is not None:
                    await self._write(*item)
            except Exception as exc:
                log.debug("could not write event: {!r}", exc)
            finally:
                self._queue.task_done()

    async def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        key = (
            ref.get("kind"),
            ref.get("namespace"),
            ref.get("name"),
            ref.get("uid"),
            ref.get("apiVersion"),
            type_,
            reason,
            message,
            self.component,
        )
        now = _now()
        previous = self._cache.get(key)
        if previous is not None:
            count = int(previous.get("count") or 1) + 1
            try:
                updated = await self.client.patch(
                    "events",
                    previous["metadata"]["name"],
                    {"count": count, "lastTimestamp": now},
                    patch_type="strategic",
                    namespace=namespace,
                )
                self._remember(key, updated)
                return
            except ApiError as exc:
                if not exc.not_found:
                    raise
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.get('name', 'unknown')}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        created = await self.client.create("events", event, namespace)
        self._remember(key, created)

    def _remember(self, key: tuple[Any, ...], event: dict[str, Any]) -> None:
        self._cache[key] = event
        self._cache.move_to_end(key)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
