"""The CronJob controller (kube 1.32's cronjob_controllerv2): Jobs on a cron schedule.

Each sync brings status.active up to date with the Jobs the CronJob owns (finished ones
leave it, a completed one sets lastSuccessfulTime), deletes finished Jobs beyond
successfulJobsHistoryLimit (3) / failedJobsHistoryLimit (1), then, unless suspended, looks for
the most recent scheduled time since lastScheduleTime (or creation) that has not run: too
late for startingDeadlineSeconds means it is skipped; concurrencyPolicy Forbid skips it while
a Job is active, Replace deletes the active ones first. The Job is named
``<cronjob>-<scheduled time in minutes since the epoch>`` (so a retried sync cannot create it
twice) and carries the ``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation. The key
is queued again for the next scheduled time.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from kybern import events, hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.informers import index_by_controller_uid
from kybern.plugins.controllers import cronschedule, util
from kybern.plugins.controllers.base import QueueController
from loguru import logger

log = logger.bind(component="cronjob-controller")

RESOURCE = "cronjobs.batch"
JOBS = "jobs.batch"
OWNER_INDEX = "cronjob-controller-uid"
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100


def _finished(job: util.Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> datetime | None:
    ts = util.parse_time(value)
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class CronJobController(QueueController):
    component = "cronjob-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cronjobs = ctx.informers.informer(RESOURCE)
        self.jobs = ctx.informers.informer(JOBS)
        self.jobs.add_indexers({OWNER_INDEX: index_by_controller_uid})
        self.cronjobs.add_event_handler(on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new))
        self.jobs.add_event_handler(
            on_add=self._job_changed,
            on_update=lambda old, new: self._job_changed(new),
            on_delete=self._job_changed,
        )

    def _enqueue(self, cj: util.Obj) -> None:
        self.queue.add(util.key_of(util.namespace_of(cj), util.name_of(cj)))

    def _job_changed(self, job: util.Obj) -> None:
        ref = util.controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(util.key_of(util.namespace_of(job), ref.get("name", "")))

    async def sync(self, key: str) -> None:
        cj = self.cronjobs.store.get(key)
        if cj is None:
            return
        cj = {"kind": "CronJob", "apiVersion": "batch/v1", **copy.deepcopy(cj)}
        spec = cj.get("spec") or {}
        status = copy.deepcopy(cj.get("status") or {})
        old_status = copy.deepcopy(status)
        jobs = [j for j in self.jobs.store.by_index(OWNER_INDEX, util.uid_of(cj))]
        by_uid = {util.uid_of(j): j for j in jobs}

        # 1. status.active follows the Jobs
        active: list[util.Obj] = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid", ""))
            if job is not None and not _finished(job):
                active.append(ref)
        known = {r.get("uid") for r in active}
        for job in jobs:
            state = _finished(job)
            if (
                state is None
                and util.uid_of(job) not in known
                and not util.meta(job).get("deletionTimestamp")
            ):
                active.append(self._ref(job))
            if state == "Complete":
                done = _parse((job.get("status") or {}).get("completionTime"))
                last = _parse(status.get("lastSuccessfulTime"))
                if done is not None and (last is None or done > last):
                    status["lastSuccessfulTime"] = _rfc3339(done)
            was_active = util.uid_of(job) in {r.get("uid") for r in old_status.get("active") or []}
            if state and was_active:
                self.recorder.event(
                    cj,
                    events.NORMAL,
                    "SawCompletedJob",
                    f"Saw completed job: {util.name_of(job)}, condition: {state}",
                )
        status["active"] = active

        if util.meta(cj).get("deletionTimestamp"):
            await self._write_status(cj, status, old_status)
            return
        await self._cleanup(cj, jobs)

        # 2. the schedule
        try:
            schedule = cronschedule.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except (ValueError, KeyError) as exc:
            self.recorder.event(
                cj,
                events.WARNING,
                "UnparseableSchedule",
                f"unparseable schedule: {spec.get('schedule')!r} : {exc}",
            )
            await self._write_status(cj, status, old_status)
            return
        now = datetime.now(UTC)
        if spec.get("suspend"):
            await self._write_status(cj, status, old_status)
            return
        earliest = (
            _parse(status.get("lastScheduleTime")) or _parse(util.meta(cj).get("creationTimestamp")) or now
        )
        scheduled, missed = self._most_recent(schedule, earliest, now)
        if missed > MAX_MISSED:
            self.recorder.event(
                cj,
                events.WARNING,
                "TooManyMissedTimes",
                f"too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew",
            )
        if scheduled is not None:
            deadline = spec.get("startingDeadlineSeconds")
            if deadline is not None and (now - scheduled).total_seconds() > int(deadline):
                self.recorder.event(
                    cj,
                    events.WARNING,
                    "MissSchedule",
                    f"Missed scheduled time to start a job: {_rfc3339(scheduled)}",
                )
            else:
                status = await self._start(cj, spec, status, scheduled)
        await self._write_status(cj, status, old_status)
        upcoming = schedule.next_after(now)
        if upcoming is not None:
            self.queue.add_after(key, max((upcoming - now).total_seconds(), 0.0) + 0.1)

    @staticmethod
    def _most_recent(
        schedule: cronschedule.Schedule, earliest: datetime, now: datetime
    ) -> tuple[datetime | None, int]:
        """The latest scheduled time in (earliest, now], and how many there were (counted up
        to MAX_MISSED + 1: beyond that only "too many" matters)."""
        last = schedule.last_at_or_before(now)
        if last is None or last <= earliest:
            return None, 0
        missed = 0
        t = schedule.next_after(earliest)
        while t is not None and t <= now and missed <= MAX_MISSED:
            missed += 1
            t = schedule.next_after(t)
        return last, missed

    @staticmethod
    def _ref(job: util.Obj) -> util.Obj:
        return {
            "kind": "Job",
            "apiVersion": "batch/v1",
            "namespace": util.namespace_of(job),
            "name": util.name_of(job),
            "uid": util.uid_of(job),
            "resourceVersion": util.meta(job).get("resourceVersion"),
        }

    async def _start(self, cj: util.Obj, spec: util.Obj, status: util.Obj, scheduled: datetime) -> util.Obj:
        ns = util.namespace_of(cj)
        policy = spec.get("concurrencyPolicy") or "Allow"
        if status.get("active") and policy == "Forbid":
            log.debug("cronjob {}/{}: {} skipped, a job is still active", ns, util.name_of(cj), scheduled)
            return status
        if status.get("active") and policy == "Replace":
            for ref in list(status["active"]):
                try:
                    await self.client.delete(JOBS, ref["name"], ns, propagation_policy="Background")
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                self.recorder.event(cj, events.NORMAL, events.SUCCESSFUL_DELETE, f"Deleted job {ref['name']}")
            status["active"] = []
        template = copy.deepcopy(spec.get("jobTemplate") or {})
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        tz = scheduled.tzinfo
        annotations[SCHEDULED_ANNOTATION] = scheduled.astimezone(tz).isoformat().replace("+00:00", "Z")
        name = f"{util.name_of(cj)}-{int(scheduled.timestamp()) // 60}"
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [util.controller_reference(cj, "CronJob", "batch/v1")],
            },
            "spec": template.get("spec") or {},
        }
        try:
            job = await self.client.create(JOBS, body, ns)
        except ApiError as exc:
            if not exc.already_exists:
                self.recorder.event(
                    cj,
                    events.WARNING,
                    events.FAILED_CREATE,
                    f"Error creating job: {exc.status.get('message', exc)}",
                )
                raise
            job = await self.client.get(JOBS, name, ns)
            if (util.controller_ref(job) or {}).get("uid") != util.uid_of(cj):
                return status
        else:
            self.recorder.event(cj, events.NORMAL, events.SUCCESSFUL_CREATE, f"Created job {name}")
        if util.uid_of(job) not in {r.get("uid") for r in status.get("active") or []}:
            status["active"] = [*(status.get("active") or []), self._ref(job)]
        status["lastScheduleTime"] = _rfc3339(scheduled)
        return status

    async def _cleanup(self, cj: util.Obj, jobs: list[util.Obj]) -> None:
        spec = cj.get("spec") or {}
        limits = {
            "Complete": spec.get("successfulJobsHistoryLimit", 3),
            "Failed": spec.get("failedJobsHistoryLimit", 1),
        }
        for state, limit in limits.items():
            if limit is None:
                continue
            done = sorted(
                (j for j in jobs if _finished(j) == state and not util.meta(j).get("deletionTimestamp")),
                key=lambda j: (util.meta(j).get("creationTimestamp", ""), util.name_of(j)),
            )
            for job in done[: max(len(done) - int(limit), 0)]:
                try:
                    await self.client.delete(
                        JOBS, util.name_of(job), util.namespace_of(job), propagation_policy="Background"
                    )
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                    continue
                self.recorder.event(
                    cj, events.NORMAL, events.SUCCESSFUL_DELETE, f"Deleted job {util.name_of(job)}"
                )

    async def _write_status(self, cj: util.Obj, status: util.Obj, old: util.Obj) -> None:
        def norm(s: util.Obj) -> util.Obj:
            out = {k: v for k, v in s.items() if v not in (None, [], {})}
            if "active" in out:
                out["active"] = sorted(r.get("uid", "") for r in out["active"])
            return out

        if norm(status) == norm(old):
            return
        if not status.get("active"):
            status.pop("active", None)
        body = copy.deepcopy(cj)
        body["status"] = status
        try:
            await self.client.update(RESOURCE, body, util.namespace_of(cj), subresource="status")
        except ApiError as exc:
            if not exc.not_found:
                raise


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="cronjob",
            factory=CronJobController,
            description="creates Jobs on CronJobs' schedules; history limits, concurrency policies",
            workers=3,
        )
    ]
