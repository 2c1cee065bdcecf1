"""The scheduler component: watches feed the cache and the queue; one loop pops pods, runs
the profile's plugins, assumes the pod on the chosen node and binds in the background.

Only pods whose ``spec.schedulerName`` names a profile are scheduled (others are left to
another scheduler, as kube does). An unschedulable pod gets ``PodScheduled=False``
(reason Unschedulable, kube's message) through pods/status and a FailedScheduling event; a
bound one a Scheduled event.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from contextlib import suppress
from typing import Any

from kybern.client import ApiClient, ApiError
from kybern.components import RunContext
from kybern.plugins.scheduler.cache import TERMINAL_PHASES, SchedulerCache
from kybern.plugins.scheduler.config import SchedulerConfig, discover_plugins, load_config
from kybern.plugins.scheduler.events import EventBroadcaster, now_rfc3339
from kybern.plugins.scheduler.framework import FitError, Profile
from kybern.plugins.scheduler.queue import QueuedPod, SchedulingQueue
from kybern.plugins.scheduler.reflector import Reflector
from kybern.scheduling import PodInfo, PostFilterResult
from loguru import logger

log = logger.bind(component="scheduler")

COMPONENT = "default-scheduler"
#: bindings in flight at once (the cache already counts them): the loop decides the next pod
#: only when one of these is free, so a burst waits in the queue rather than in binding tasks.
#: It also caps the bindings per second at MAX_BINDING / a binding's round trip: at 64, once
#: the API server's group commit added a turn of its loop to each write, the scheduler bound
#: ~570 pods/s while pods were created faster, and create-to-bound p50 grew to 1-1.6 s (kube-
#: scheduler has no cap: each binding is a goroutine)
MAX_BINDING = 256
#: PodScheduled condition writes in flight at once: they must not starve bindings
MAX_REPORTING = 8
#: longest run of scheduling decisions before the loop lets other tasks in
SLICE_SECONDS = 0.01


def _affects_others(pod: PodInfo) -> bool:
    """Pods whose placement can hinge on other pods being assigned somewhere."""
    return bool(pod.topology_spread or pod.affinity.get("podAffinity"))


class Scheduler:
    def __init__(self, ctx: RunContext, config: SchedulerConfig | None = None) -> None:
        self.ctx = ctx
        pm = ctx.plugins
        available = discover_plugins(pm)
        self.config = config or load_config(ctx.config.extra.get("scheduler_config"), available)
        self.profiles = {p.scheduler_name: Profile(p, pm, available) for p in self.config.profiles}
        first = next(iter(self.profiles.values()))
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(first.sort_key)
        self.client: ApiClient | None = None
        self.events: EventBroadcaster | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._binding = asyncio.Semaphore(MAX_BINDING)
        self._reporting = asyncio.Semaphore(MAX_REPORTING)
        #: last Unschedulable message written per pod uid (no rewrite when unchanged)
        self._reported: dict[str, str] = {}
        self.scheduled = 0
        self.attempts = 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        assert self.ctx.api is not None
        self.client = self.ctx.api("kybern-scheduler")
        self.events = EventBroadcaster(self.client, COMPONENT)
        self.events.start()
        self._nodes = Reflector(self.client, "nodes", self._list_nodes, self._node_event)
        self._pods = Reflector(self.client, "pods", self._list_pods, self._pod_event)
        # the cache must be complete before the first decision (kube waits for cache sync)
        await self._nodes.list_once()
        await self._pods.list_once()
        stopping = self.ctx.stopping
        self._tasks = [
            asyncio.create_task(self._nodes.run(stopping), name="scheduler-watch-nodes"),
            asyncio.create_task(self._pods.run(stopping), name="scheduler-watch-pods"),
            asyncio.create_task(self._loop(), name="scheduler-loop"),
        ]
        log.info(
            "scheduler running: profiles {}, {} nodes, {} pending pods",
            ", ".join(self.profiles),
            len(self.cache.nodes),
            len(self.queue.pods),
        )

    async def stop(self) -> None:
        self.queue.close()
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with suppress(asyncio.CancelledError, Exception):
                await task
        if self.events is not None:
            await self.events.stop()
        if self.client is not None:
            await self.client.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- watch handlers ------------------------------------------------------------------------

    def _list_nodes(self, items: list[dict[str, Any]]) -> None:
        names = {(i.get("metadata") or {}).get("name") for i in items}
        for name in [n for n in self.cache.nodes if n not in names]:
            self.cache.remove_node(name)
        for item in items:
            self.cache.set_node(item)
        self.queue.move_all()

    def _node_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.cache.remove_node((obj.get("metadata") or {}).get("name") or "")
            return
        _, changed = self.cache.set_node(obj)
        if changed:
            self.queue.move_all()

    def _list_pods(self, items: list[dict[str, Any]]) -> None:
        uids = {(i.get("metadata") or {}).get("uid") for i in items}
        for uid in [u for u in self.cache.pod_node if u not in uids and u not in self.cache.assumed]:
            self.cache.remove_pod(uid)
        for uid in [u for u in self.queue.pods if u not in uids]:
            self.queue.remove(uid)
        for item in items:
            self._pod_event("ADDED", item)

    def _pod_event(self, kind: str, obj: dict[str, Any]) -> None:
        uid = (obj.get("metadata") or {}).get("uid") or ""
        if kind == "MODIFIED":
            if self.cache.refresh_assigned(uid, obj):
                return
            if self.cache.confirm_assumed(uid, obj):
                # what the general path does for a pod it now counts as bound
                self.cache.clear_nomination(uid)
                self.queue.remove(uid)
                self._reported.pop(uid, None)
                self.queue.move_all(_affects_others)
                return
        pod = PodInfo.from_obj(obj)
        if kind == "DELETED" or pod.node_name:
            self.cache.clear_nomination(pod.uid)
        if kind == "DELETED":
            self.queue.remove(pod.uid)
            self._reported.pop(pod.uid, None)
            if self.cache.remove_pod(pod.uid) is not None:
                self.queue.move_all()
            return
        if pod.node_name:
            self.queue.remove(pod.uid)
            self._reported.pop(pod.uid, None)
            if obj.get("status", {}).get("phase") in TERMINAL_PHASES:
                if self.cache.remove_pod(pod.uid) is not None:
                    self.queue.move_all()
                return
            if self.cache.set_assigned_pod(pod):
                self.queue.move_all(_affects_others)
            return
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.remove(pod.uid)
            return
        if pod.scheduler_name not in self.profiles or self.cache.is_counted(pod.uid):
            return  # another scheduler's pod, or ours being bound right now
        if pod.spec.get("schedulingGates"):
            self.queue.remove(pod.uid)  # kube's SchedulingGates: not queued until the gates go
            return
        self.queue.add(pod)

    # --- the scheduling loop -------------------------------------------------------------------

    async def _loop(self) -> None:
        yielded = time.monotonic()
        while not self.ctx.stopping.is_set():
            # a free binding slot before the next decision: a burst waits in the queue (where a
            # deletion simply removes it), not as thousands of assumed pods in binding tasks
            await self._binding.acquire()
            try:
                queued = await self.queue.pop()
            except BaseException:
                self._binding.release()
                raise
            binding = False
            try:
                binding = await self._schedule_one(queued)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling {} failed", queued.pod.key)
                self.queue.requeue_error(queued)
            finally:
                if not binding:
                    self._binding.release()
            # a burst is scheduled in slices, letting watch events, bindings and (in the
            # server process) API requests in between; a slice per pod starves the scheduler
            now = time.monotonic()
            if now - yielded >= SLICE_SECONDS:
                await asyncio.sleep(0)
                yielded = time.monotonic()

    async def _schedule_one(self, queued: QueuedPod) -> bool:
        """One scheduling cycle; True when the pod went on to binding (which then holds the
        binding slot the loop took)."""
        pod = queued.pod
        profile = self.profiles.get(pod.scheduler_name)
        if profile is None:
            self.queue.remove(pod.uid)
            return False
        self.attempts += 1
        nodes = self.cache.node_list()
        state = profile.new_state(nodes, self.client)
        state.anti_affinity_pods = self.cache.anti_affinity_pods
        state.tainted_nodes = self.cache.tainted_nodes
        state.unschedulable_nodes = self.cache.unschedulable_nodes
        result = profile.schedule(
            state, pod, nodes, self.config.percentage_of_nodes_to_score, self.cache.nominated_pods()
        )
        if isinstance(result, FitError):
            await self._unschedulable(profile, state, queued, result)
            return False
        node_name = result
        for name, fn in profile.points["reserve"]:
            reason = fn(state=state, pod=pod, node_name=node_name)
            if reason:
                self._unreserve(profile, state, pod, node_name)
                self._report_failure(pod, f"reserve plugin {name}: {reason}", "SchedulerError")
                self.queue.requeue_error(queued)
                return False
        for name, fn in profile.points["permit"]:
            reason = fn(state=state, pod=pod, node_name=node_name)
            if reason:
                self._unreserve(profile, state, pod, node_name)
                self._report_failure(pod, f"permit plugin {name}: {reason}", "SchedulerError")
                self.queue.requeue_error(queued)
                return False
        self.cache.assume(pod, node_name)
        self._spawn(self._bind(profile, state, queued, node_name))
        return True

    def _unreserve(self, profile: Profile, state: Any, pod: PodInfo, node_name: str) -> None:
        for _, fn in reversed(profile.unreserve_fns):
            try:
                fn(state=state, pod=pod, node_name=node_name)
            except Exception:
                log.exception("unreserve of {} failed", pod.key)

    async def _bind(self, profile: Profile, state: Any, queued: QueuedPod, node_name: str) -> None:
        """Runs holding the binding slot the loop took for it."""
        pod = queued.pod
        try:
            error: str | None = None
            try:
                for name, fn in profile.points["preBind"]:
                    result = fn(state=state, pod=pod, node_name=node_name)
                    if inspect.isawaitable(result):
                        result = await result
                    if result:
                        error = f"preBind plugin {name}: {result}"
                        break
                if error is None:
                    error = "no bind plugin bound the pod"
                    for _, fn in profile.points["bind"]:
                        result = fn(state=state, pod=pod, node_name=node_name)
                        if result is None:
                            continue
                        error = await result if inspect.isawaitable(result) else result
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        finally:
            self._binding.release()
        if error is not None:
            log.info("binding {} to {} failed: {}", pod.key, node_name, error)
            self.cache.forget(pod.uid)
            self._unreserve(profile, state, pod, node_name)
            self.queue.move_all()  # the room it held is free again
            if "already assigned" in error or "not found" in error.lower():
                self.queue.remove(pod.uid)
                return
            self._report_failure(pod, f"Binding rejected: {error}", "SchedulerError")
            self.queue.requeue_error(queued)
            return
        self.scheduled += 1
        self.queue.done(pod.uid)
        for _, fn in profile.points["postBind"]:
            try:
                fn(state=state, pod=pod, node_name=node_name)
            except Exception:
                log.exception("postBind for {} failed", pod.key)
        self._event(pod, "Normal", "Scheduled", f"Successfully assigned {pod.key} to {node_name}")

    async def _unschedulable(self, profile: Profile, state: Any, queued: QueuedPod, fit: FitError) -> None:
        pod = queued.pod
        nominated: str | None = None
        if fit.reasons or fit.total_nodes:
            for _, fn in profile.points["postFilter"]:
                result = fn(state=state, pod=pod, reasons=fit.reasons)
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, PostFilterResult):
                    if result.nominated_node:
                        nominated = result.nominated_node
                        self.cache.nominate(pod, nominated)
                        break
                    if result.message:
                        fit.post_filter_message = result.message
        message = fit.message()
        log.debug("{} is unschedulable: {}", pod.key, message)
        self.queue.requeue_unschedulable(queued)
        if nominated is None or self._reported.get(pod.uid) != message:
            self._report_failure(pod, message, "Unschedulable")

    # --- reporting -----------------------------------------------------------------------------

    def _report_failure(self, pod: PodInfo, message: str, reason: str) -> None:
        self._event(pod, "Warning", "FailedScheduling", message)
        if self._reported.get(pod.uid) != message:
            self._reported[pod.uid] = message
            self._spawn(self._set_condition(pod, reason, message))

    async def _set_condition(self, pod: PodInfo, reason: str, message: str) -> None:
        assert self.client is not None
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339(),
        }
        async with self._reporting:
            try:
                await self.client.patch(
                    "pods",
                    pod.name,
                    {"status": {"conditions": [condition]}},
                    patch_type="strategic",
                    namespace=pod.namespace,
                    subresource="status",
                )
            except ApiError as exc:
                if not exc.not_found:
                    log.warning("cannot set PodScheduled on {}: {}", pod.key, exc)

    def _event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(pod, type_, reason, message)
