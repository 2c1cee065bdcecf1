"""The Job controller (kube 1.32's pkg/controller/job) and the TTL-after-finished controller.

Pods are tracked with finalizers, as kube does since 1.26: every pod is created with the
``batch.kubernetes.io/job-tracking`` finalizer, so it cannot vanish before it is counted. A
finished pod (Succeeded, Failed, or terminating without having succeeded) first goes into
status.uncountedTerminatedPods, then loses its finalizer, then moves into status.succeeded /
failed: a crash between any two steps is recovered from the status, nothing is counted twice.

Each sync keeps min(parallelism, completions left) pods active (NonIndexed or Indexed),
creating new ones after a failure only once the back-off (10 s doubling per consecutive
failure, at most 10 min; ``--job-pod-failure-backoff`` changes the base) has passed.
A Job that has more failures than backoffLimit, or ran longer than activeDeadlineSeconds,
gets FailureTarget, its active pods are deleted, and it turns Failed once none is left; one
that reached its completions gets SuccessCriteriaMet and then Complete (with completionTime)
once its pods have terminated, which is what ``kubectl wait --for=condition=complete`` waits
for.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import click
from kybern import events, hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.informers import index_by_controller_uid, split_key
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController
from kybern.plugins.controllers.durations import parse_duration
from loguru import logger

log = logger.bind(component="job-controller")

RESOURCE = "jobs.batch"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
OWNER_INDEX = "job-controller-uid"
MAX_BACKOFF = 600.0
MANAGED_BY = "kubernetes.io/job-controller"


def condition(job: util.Obj, type_: str) -> util.Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c
    return None


def is_finished(job: util.Obj) -> bool:
    return condition(job, "Complete") is not None or condition(job, "Failed") is not None


def _is_failed(pod: util.Obj, job: util.Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if (job.get("spec") or {}).get("podReplacementPolicy") == "Failed":
        return False
    return bool(util.meta(pod).get("deletionTimestamp")) and phase != "Succeeded"


def match_pod_failure_policy(policy: util.Obj | None, pod: util.Obj) -> tuple[str | None, str]:
    """The action of the first podFailurePolicy rule a failed pod matches (kube's
    matchPodFailurePolicy), with the message kube gives a FailJob; (None, "") if none."""
    ns, name = util.namespace_of(pod), util.name_of(pod)
    status = pod.get("status") or {}
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    for index, rule in enumerate((policy or {}).get("rules") or []):
        action = rule.get("action")
        codes = rule.get("onExitCodes")
        if codes:
            for cs in statuses:
                if codes.get("containerName") and codes["containerName"] != cs.get("name"):
                    continue
                term = (cs.get("state") or {}).get("terminated")
                if not term or not term.get("exitCode"):
                    continue
                code = int(term["exitCode"])
                inside = code in (codes.get("values") or [])
                if inside == (codes.get("operator") == "In"):
                    return action, (
                        f"Container {cs.get('name')} for pod {ns}/{name} failed with exit code {code} "
                        f"matching {action} rule at index {index}"
                    )
            continue
        for pattern in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                if cond.get("type") == pattern.get("type") and cond.get("status") == (
                    pattern.get("status") or "True"
                ):
                    return action, (
                        f"Pod {ns}/{name} has condition {cond.get('type')} matching {action} rule "
                        f"at index {index}"
                    )
    return None, ""


def _pod_index(pod: util.Obj) -> int | None:
    raw = (util.meta(pod).get("annotations") or {}).get(INDEX_ANNOTATION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _format_indexes(indexes: set[int]) -> str:
    """kube's compressed interval list: ``0-2,5``."""
    out: list[str] = []
    items = sorted(indexes)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


def _parse_indexes(text: str | None) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


class CreationExpectations:
    """Pods created and not yet seen in the informer, per Job: until they show up the Job's
    active count is stale and creating again would overshoot parallelism. An entry older
    than five minutes counts as met (a lost event must not wedge the Job)."""

    def __init__(self, timeout: float = 300.0) -> None:
        self.timeout = timeout
        self._items: dict[str, tuple[int, float]] = {}

    def satisfied(self, key: str) -> bool:
        pending, at = self._items.get(key, (0, 0.0))
        return pending <= 0 or time.monotonic() - at > self.timeout

    def expect(self, key: str, count: int) -> None:
        self._items[key] = (count, time.monotonic())

    def lower(self, key: str, count: int = 1) -> None:
        if key in self._items:
            pending, at = self._items[key]
            self._items[key] = (pending - count, at)

    def creation_observed(self, key: str) -> None:
        self.lower(key, 1)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


class JobController(QueueController):
    component = "job-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        extra = ctx.config.extra if ctx.config is not None else {}
        self.backoff_base = parse_duration(extra.get("job_pod_failure_backoff"), 10.0)
        self.expectations = CreationExpectations()
        self.jobs = ctx.informers.informer(RESOURCE)
        self.pods = ctx.informers.informer("pods")
        self.pods.add_indexers({OWNER_INDEX: index_by_controller_uid})
        self.jobs.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._job_deleted
        )
        self.pods.add_event_handler(
            on_add=lambda p: self._pod_event(p, created=True),
            on_update=lambda old, new: self._pod_event(new),
            on_delete=lambda p: self._pod_event(p, deleted=True),
        )
        #: job key -> (consecutive failures seen, monotonic time of the last one)
        self.backoff: dict[str, tuple[int, float]] = {}
        #: uids of pods whose job is gone and whose finalizer must still go
        self.orphans: set[str] = set()

    def _enqueue(self, job: util.Obj) -> None:
        self.queue.add(util.key_of(util.namespace_of(job), util.name_of(job)))

    def _job_deleted(self, job: util.Obj) -> None:
        key = util.key_of(util.namespace_of(job), util.name_of(job))
        self.expectations.forget(key)
        self.backoff.pop(key, None)
        # its pods may still hold the tracking finalizer
        for pod in self.pods.store.by_index(OWNER_INDEX, util.uid_of(job)):
            self.queue.add(f"pod:{util.namespace_of(pod)}/{util.name_of(pod)}")

    def _job_key_for(self, pod: util.Obj) -> str | None:
        ref = util.controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        return util.key_of(util.namespace_of(pod), ref.get("name", ""))

    def _pod_event(self, pod: util.Obj, created: bool = False, deleted: bool = False) -> None:
        key = self._job_key_for(pod)
        if key is None:
            return
        job = self.jobs.store.get(key)
        ref = util.controller_ref(pod) or {}
        if job is None or util.uid_of(job) != ref.get("uid"):
            if not deleted and TRACKING_FINALIZER in (util.meta(pod).get("finalizers") or []):
                self.queue.add(f"pod:{util.namespace_of(pod)}/{util.name_of(pod)}")
            return
        if created:
            self.expectations.creation_observed(key)
        self.queue.add(key)

    # --- sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith("pod:"):
            await self._release_orphan(key[4:])
            return
        job = self.jobs.store.get(key)
        if job is None:
            return
        managed_by = (job.get("spec") or {}).get("managedBy")
        if managed_by and managed_by != MANAGED_BY:
            return  # another controller runs this Job (spec.managedBy, beta in 1.32)
        job = {"kind": "Job", "apiVersion": "batch/v1", **copy.deepcopy(job)}
        if is_finished(job) and not util.meta(job).get("deletionTimestamp"):
            # only finalizers of already counted pods may be left
            await self._remove_finalizers(
                [p for p in self._pods(job) if TRACKING_FINALIZER in (util.meta(p).get("finalizers") or [])]
            )
            return
        if util.meta(job).get("deletionTimestamp"):
            await self._remove_finalizers(self._pods(job))
            return
        await self._sync_job(key, job)

    async def _release_orphan(self, pod_key: str) -> None:
        pod = self.pods.store.get(pod_key)
        if pod is None:
            return
        key = self._job_key_for(pod)
        job = self.jobs.store.get(key) if key else None
        if job is not None and util.uid_of(job) == (util.controller_ref(pod) or {}).get("uid"):
            return
        await self._remove_finalizers([pod])

    def _pods(self, job: util.Obj) -> list[util.Obj]:
        return list(self.pods.store.by_index(OWNER_INDEX, util.uid_of(job)))

    async def _remove_finalizers(self, pods: list[util.Obj]) -> None:
        for pod in pods:
            finalizers = util.meta(pod).get("finalizers") or []
            if TRACKING_FINALIZER not in finalizers:
                continue
            patch = {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != TRACKING_FINALIZER],
                    "resourceVersion": util.meta(pod).get("resourceVersion"),
                }
            }
            try:
                await self.client.patch("pods", util.name_of(pod), patch, namespace=util.namespace_of(pod))
            except ApiError as exc:
                if not exc.not_found:
                    raise

    async def _sync_job(self, key: str, job: util.Obj) -> None:
        spec, status = job.get("spec") or {}, copy.deepcopy(job.get("status") or {})
        old_status = copy.deepcopy(status)
        indexed = spec.get("completionMode") == "Indexed"
        pods = self._pods(job)
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        unc_succeeded = set(uncounted.get("succeeded") or [])
        unc_failed = set(uncounted.get("failed") or [])
        now = time.time()
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = util.now_iso()

        # 1. finished pods still holding the finalizer go into uncountedTerminatedPods
        newly_finished: list[util.Obj] = []
        new_failures = 0
        policy_failure: str | None = None
        completed_indexes = _parse_indexes(status.get("completedIndexes"))
        for pod in pods:
            uid = util.uid_of(pod)
            if TRACKING_FINALIZER not in (util.meta(pod).get("finalizers") or []):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded":
                if uid not in unc_succeeded:
                    unc_succeeded.add(uid)
                    idx = _pod_index(pod)
                    if indexed and idx is not None:
                        completed_indexes.add(idx)
                newly_finished.append(pod)
            elif _is_failed(pod, job):
                action, message = match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
                if action == "FailJob" and policy_failure is None:
                    policy_failure = message
                if action == "Ignore":
                    pass  # released below without counting towards backoffLimit
                elif uid not in unc_failed:
                    unc_failed.add(uid)
                    new_failures += 1
                newly_finished.append(pod)
        if new_failures:
            count, _ = self.backoff.get(key, (0, 0.0))
            self.backoff[key] = (count + new_failures, time.monotonic())
        elif any((p.get("status") or {}).get("phase") == "Succeeded" for p in newly_finished):
            self.backoff.pop(key, None)
        if newly_finished:
            uncounted["succeeded"] = sorted(unc_succeeded)
            uncounted["failed"] = sorted(unc_failed)
            if indexed:
                status["completedIndexes"] = _format_indexes(completed_indexes)
            job = await self._write_status(job, status)
            status = copy.deepcopy(job.get("status") or {})
            # 2. then the finalizers, 3. then the counts
            await self._remove_finalizers(newly_finished)
            uncounted = status.setdefault("uncountedTerminatedPods", {})
            status["succeeded"] = int(status.get("succeeded") or 0) + len(uncounted.get("succeeded") or [])
            status["failed"] = int(status.get("failed") or 0) + len(uncounted.get("failed") or [])
            status["uncountedTerminatedPods"] = {}
        elif unc_succeeded or unc_failed:
            # a previous sync stopped between steps 1 and 3
            status["succeeded"] = int(status.get("succeeded") or 0) + len(unc_succeeded)
            status["failed"] = int(status.get("failed") or 0) + len(unc_failed)
            status["uncountedTerminatedPods"] = {}

        counted = {util.uid_of(p) for p in newly_finished}
        active = [p for p in pods if util.is_pod_active(p) and util.uid_of(p) not in counted]
        terminating = [
            p
            for p in pods
            if util.meta(p).get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        succeeded = int(status.get("succeeded") or 0)
        failed = int(status.get("failed") or 0)
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)

        # 4. success or failure criteria
        target = condition(job, "FailureTarget") or condition(job, "SuccessCriteriaMet")
        if target is None:
            if policy_failure is not None:
                target = self._add_condition(status, "FailureTarget", "PodFailurePolicy", policy_failure)
            elif failed > backoff_limit:
                target = self._add_condition(
                    status,
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            elif (
                spec.get("activeDeadlineSeconds") is not None
                and status.get("startTime")
                and (
                    (util.parse_time(status["startTime"]) or now) + int(spec["activeDeadlineSeconds"]) <= now
                )
            ):
                target = self._add_condition(
                    status,
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            elif self._complete(spec, succeeded, active, completed_indexes, indexed):
                target = self._add_condition(
                    status,
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
        manage_error: Exception | None = None
        if target is not None:
            if active:
                await self._delete_pods(job, active)
                active = []
            if not terminating and not [
                p
                for p in pods
                if TRACKING_FINALIZER in (util.meta(p).get("finalizers") or [])
                and util.uid_of(p) not in counted
            ]:
                final = "Failed" if target["type"] == "FailureTarget" else "Complete"
                self._add_condition(status, final, target.get("reason", ""), target.get("message", ""))
                if final == "Complete":
                    status["completionTime"] = util.now_iso()
                    self.recorder.event(job, events.NORMAL, "Completed", "Job completed")
                else:
                    self.recorder.event(
                        job, events.WARNING, target.get("reason", "Failed"), target.get("message", "")
                    )
        elif spec.get("suspend"):
            if active:
                await self._delete_pods(job, active)
                active = []
            if condition(job, "Suspended") is None:
                self._add_condition(status, "Suspended", "JobSuspended", "Job suspended")
                self.recorder.event(job, events.NORMAL, "Suspended", "Job suspended")
            status.pop("startTime", None)
        else:
            if condition(job, "Suspended") is not None:
                self._add_condition(status, "Suspended", "JobResumed", "Job resumed", value="False")
                self.recorder.event(job, events.NORMAL, "Resumed", "Job resumed")
            if self.expectations.satisfied(key):
                try:
                    active = await self._manage(
                        key,
                        job,
                        spec,
                        active,
                        succeeded,
                        completed_indexes,
                        indexed,
                        completions,
                        parallelism,
                    )
                except Exception as exc:
                    log.opt(exception=not isinstance(exc, ApiError)).warning("job {}: {}", key, exc)
                    manage_error = exc
            if spec.get("activeDeadlineSeconds") is not None and status.get("startTime"):
                left = (
                    (util.parse_time(status["startTime"]) or now) + int(spec["activeDeadlineSeconds"]) - now
                )
                self.queue.add_after(key, max(left, 0.0) + 0.1)

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if util.is_pod_ready(p))
        status["terminating"] = len(terminating)
        for k in ("succeeded", "failed"):
            status.setdefault(k, 0)
        if _norm(status) != _norm(old_status):
            await self._write_status(job, status)
        if manage_error is not None:
            raise manage_error

    @staticmethod
    def _complete(
        spec: util.Obj, succeeded: int, active: list[util.Obj], indexes: set[int], indexed: bool
    ) -> bool:
        completions = spec.get("completions")
        if completions is None:
            return succeeded > 0 and not active
        if indexed:
            return len({i for i in indexes if i < int(completions)}) >= int(completions)
        return succeeded >= int(completions)

    @staticmethod
    def _add_condition(
        status: util.Obj, type_: str, reason: str, message: str, value: str = "True"
    ) -> util.Obj:
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != type_]
        stamp = util.now_iso()
        cond = {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastProbeTime": stamp,
            "lastTransitionTime": stamp,
        }
        conditions.append(cond)
        status["conditions"] = conditions
        return cond

    async def _manage(
        self,
        key: str,
        job: util.Obj,
        spec: util.Obj,
        active: list[util.Obj],
        succeeded: int,
        completed: set[int],
        indexed: bool,
        completions: Any,
        parallelism: int,
    ) -> list[util.Obj]:
        if completions is None:
            wanted = 0 if succeeded > 0 else parallelism
        elif indexed:
            wanted = min(parallelism, int(completions) - len({i for i in completed if i < int(completions)}))
        else:
            wanted = min(parallelism, int(completions) - succeeded)
        wanted = max(wanted, 0)
        diff = len(active) - wanted
        if diff > 0:
            victims = sorted(active, key=util.deletion_rank)[:diff]
            await self._delete_pods(job, victims)
            return [p for p in active if p not in victims]
        if diff == 0:
            return active
        failures, last = self.backoff.get(key, (0, 0.0))
        if failures:
            delay = min(self.backoff_base * 2 ** (failures - 1), MAX_BACKOFF)
            left = last + delay - time.monotonic()
            if left > 0:
                self.queue.add_after(key, left)
                return active
        count = -diff
        indexes: list[int | None] = [None] * count
        if indexed:
            busy = {_pod_index(p) for p in active} | completed
            free = [i for i in range(int(completions)) if i not in busy]
            indexes = list(free[:count])
            count = len(indexes)
        self.expectations.expect(key, count)
        pending = list(indexes)

        async def create_one() -> None:
            index = pending.pop(0)
            body = util.pod_from_template(spec.get("template") or {}, job, "Job", "batch/v1")
            m = body["metadata"]
            m["finalizers"] = [*(m.get("finalizers") or []), TRACKING_FINALIZER]
            if index is not None:
                m["generateName"] = f"{util.name_of(job)}-{index}-"
                m.setdefault("annotations", {})[INDEX_ANNOTATION] = str(index)
                m["labels"][INDEX_LABEL] = str(index)
                body["spec"].setdefault("hostname", f"{util.name_of(job)}-{index}")
            try:
                pod = await self.client.create("pods", body, util.namespace_of(job))
            except ApiError as exc:
                self.recorder.event(
                    job,
                    events.WARNING,
                    events.FAILED_CREATE,
                    f"Error creating: {exc.status.get('message', exc)}",
                )
                raise
            self.recorder.event(
                job, events.NORMAL, events.SUCCESSFUL_CREATE, f"Created pod: {util.name_of(pod)}"
            )

        done, err = await util.slow_start_batch(count, 1, create_one)
        if done < count:
            self.expectations.lower(key, count - done)
        if err is not None:
            raise err
        return active

    async def _delete_pods(self, job: util.Obj, pods: list[util.Obj]) -> None:
        for pod in pods:
            try:
                await self.client.delete("pods", util.name_of(pod), util.namespace_of(pod))
            except ApiError as exc:
                if not exc.not_found:
                    raise
                continue
            self.recorder.event(
                job, events.NORMAL, events.SUCCESSFUL_DELETE, f"Deleted pod: {util.name_of(pod)}"
            )

    async def _write_status(self, job: util.Obj, status: util.Obj) -> util.Obj:
        body = copy.deepcopy(job)
        body["status"] = status
        try:
            return await self.client.update(RESOURCE, body, util.namespace_of(job), subresource="status")
        except ApiError as exc:
            if exc.conflict:
                log.debug("job {}: status conflict, retrying", util.name_of(job))
            raise


def _norm(status: util.Obj) -> util.Obj:
    return {k: v for k, v in status.items() if v not in (None, 0, [], {})}


class TTLAfterFinishedController(QueueController):
    """kube's ttlafterfinished controller: a finished Job goes ttlSecondsAfterFinished after
    it finished (Foreground, so its pods go first)."""

    component = "ttl-after-finished-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informers.informer(RESOURCE)
        self.jobs.add_event_handler(on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new))

    def _enqueue(self, job: util.Obj) -> None:
        if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and is_finished(job):
            self.queue.add(util.key_of(util.namespace_of(job), util.name_of(job)))

    async def sync(self, key: str) -> None:
        job = self.jobs.store.get(key)
        if job is None or util.meta(job).get("deletionTimestamp") or not is_finished(job):
            return
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        cond = condition(job, "Complete") or condition(job, "Failed") or {}
        finished = util.parse_time(cond.get("lastTransitionTime")) or time.time()
        left = finished + int(ttl) - time.time()
        if left > 0:
            self.queue.add_after(key, left)
            return
        ns, name = split_key(key)
        try:
            await self.client.delete(
                RESOURCE, name, ns, propagation_policy="Foreground", preconditions={"uid": util.uid_of(job)}
            )
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise
        log.info("job {} deleted {}s after it finished", key, ttl)


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="job",
            factory=JobController,
            description="runs Jobs' pods to completion (completions, parallelism, backoffLimit)",
            workers=5,
        ),
        ControllerSpec(
            name="ttlafterfinished",
            factory=TTLAfterFinishedController,
            description="deletes finished Jobs after ttlSecondsAfterFinished",
            workers=2,
        ),
    ]


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    if command != "server":
        return []
    return [
        click.Option(
            ["--job-pod-failure-backoff"],
            default="10s",
            show_default=True,
            help="Base of the exponential delay before a Job replaces a failed pod (kybern extension)",
        )
    ]
