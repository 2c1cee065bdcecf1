"""The scheduling queue: active (sorted by the queue-sort plugin), back-off and unschedulable.

A pod that failed waits in *unschedulable* until something that could change the answer
happens (a node added or changed, a pod deleted or assigned): then it moves to *back-off*
(1 s doubling to 10 s per failed attempt, as kube-scheduler) and from there to *active*.
Timers, not polling, move pods out of back-off; pods left unschedulable for five minutes are
retried anyway (kube's podMaxInUnschedulablePodsDuration), in case an event was missed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kybern.scheduling import PodInfo

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_TIMEOUT = 300.0


@dataclass(eq=False)
class QueuedPod:
    pod: PodInfo
    attempts: int = 0
    #: when the last attempt failed (monotonic)
    failed_at: float = 0.0
    #: move-request counter when this pod was popped, to notice events during its attempt
    popped_cycle: int = -1
    where: str = ""
    sort_key: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def backoff_until(self) -> float:
        if self.attempts == 0:
            return 0.0
        return self.failed_at + min(INITIAL_BACKOFF * 2 ** (self.attempts - 1), MAX_BACKOFF)


class SchedulingQueue:
    def __init__(self, sort_key: Callable[[PodInfo], Any]) -> None:
        self._sort_key = sort_key
        self._seq = itertools.count()
        self._active: list[tuple[Any, int, QueuedPod]] = []
        self._backoff: list[tuple[float, int, QueuedPod]] = []
        self._unschedulable: dict[str, QueuedPod] = {}
        #: every queued pod by uid; ``where`` says which sub-queue holds it ("" = in flight)
        self.pods: dict[str, QueuedPod] = {}
        self.move_cycle = 0
        self._wakeup = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.closed = False

    # --- adding and updating -------------------------------------------------------------------

    def add(self, pod: PodInfo) -> None:
        """A new pending pod, or an update of one already known (kept where it is)."""
        queued = self.pods.get(pod.uid)
        if queued is not None:
            changed = pod.obj.get("spec") != queued.pod.obj.get("spec") or pod.labels != queued.pod.labels
            queued.pod = pod
            if changed and queued.where == "unschedulable":
                # kube retries an unschedulable pod when its spec changes
                self._unschedulable.pop(pod.uid, None)
                self._to_backoff_or_active(queued)
            return
        queued = QueuedPod(pod)
        self.pods[pod.uid] = queued
        self._push_active(queued)

    def remove(self, uid: str) -> None:
        """The pod was deleted or assigned elsewhere; heaps drop it lazily."""
        queued = self.pods.pop(uid, None)
        if queued is not None:
            self._unschedulable.pop(uid, None)
            queued.where = "gone"

    def _push_active(self, queued: QueuedPod) -> None:
        queued.where = "active"
        queued.sort_key = self._sort_key(queued.pod)
        heapq.heappush(self._active, (queued.sort_key, next(self._seq), queued))
        self._wakeup.set()

    def _to_backoff_or_active(self, queued: QueuedPod) -> None:
        until = queued.backoff_until()
        if until <= time.monotonic():
            self._push_active(queued)
            return
        queued.where = "backoff"
        heapq.heappush(self._backoff, (until, next(self._seq), queued))
        self._arm(until)

    # --- results of an attempt -----------------------------------------------------------------

    def requeue_unschedulable(self, queued: QueuedPod) -> None:
        """The attempt found no node: wait for an event, unless one came during the attempt."""
        if queued.where == "gone" or self.pods.get(queued.pod.uid) is not queued:
            return
        queued.attempts += 1
        queued.failed_at = time.monotonic()
        if queued.popped_cycle != self.move_cycle:
            self._to_backoff_or_active(queued)
            return
        queued.where = "unschedulable"
        self._unschedulable[queued.pod.uid] = queued
        self._arm(queued.failed_at + UNSCHEDULABLE_TIMEOUT)

    def requeue_error(self, queued: QueuedPod) -> None:
        """The attempt failed for another reason (binding error): back off and retry."""
        if queued.where == "gone" or self.pods.get(queued.pod.uid) is not queued:
            return
        queued.attempts += 1
        queued.failed_at = time.monotonic()
        self._to_backoff_or_active(queued)

    def done(self, uid: str) -> None:
        """Bound: forget the pod."""
        queued = self.pods.pop(uid, None)
        if queued is not None:
            queued.where = "gone"

    # --- events ---------------------------------------------------------------------------------

    def move_all(self, only: Callable[[PodInfo], bool] | None = None) -> int:
        """Something changed that may make unschedulable pods fit: retry them (after back-off)."""
        self.move_cycle += 1
        moved = 0
        for uid, queued in list(self._unschedulable.items()):
            if only is not None and not only(queued.pod):
                continue
            del self._unschedulable[uid]
            self._to_backoff_or_active(queued)
            moved += 1
        return moved

    def _arm(self, when: float) -> None:
        if self.closed or when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = when
        self._timer = loop.call_later(max(when - time.monotonic(), 0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = time.monotonic()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, queued = heapq.heappop(self._backoff)
            if queued.where == "backoff":
                self._push_active(queued)
        if self._backoff:
            self._arm(self._backoff[0][0])
        for uid, queued in list(self._unschedulable.items()):
            if queued.failed_at + UNSCHEDULABLE_TIMEOUT <= now:
                del self._unschedulable[uid]
                self._push_active(queued)
            else:
                self._arm(queued.failed_at + UNSCHEDULABLE_TIMEOUT)

    # --- consuming ------------------------------------------------------------------------------

    async def pop(self) -> QueuedPod:
        while True:
            while self._active:
                _, _, queued = heapq.heappop(self._active)
                if queued.where == "active":
                    queued.where = ""
                    queued.popped_cycle = self.move_cycle
                    return queued
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()

    def counts(self) -> dict[str, int]:
        out = {"active": 0, "backoff": 0, "unschedulable": 0, "inflight": 0}
        for queued in self.pods.values():
            out[queued.where or "inflight"] = out.get(queued.where or "inflight", 0) + 1
        return out
