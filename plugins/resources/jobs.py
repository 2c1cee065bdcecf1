"""Job and CronJob (batch/v1): defaulting incl. the generated selector, validation, table rows."""

from __future__ import annotations

import copy
import zoneinfo
from datetime import UTC, datetime
from typing import Any

from kybern.plugins.resources.common import (
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    JSON,
    NAME_COLUMN,
    GoStringMap,
    age_of,
    bool_str,
    dig,
    ensure,
    human_duration,
    layout_containers,
    name_of,
    parse_time,
    selector_matches,
    selector_string,
    since,
)
from kybern.plugins.resources.cron import schedule_error
from kybern.plugins.resources.pod_defaults import default_pod_template
from kybern.plugins.resources.pod_validation import validate_pod_template
from kybern.plugins.resources.workloads import validate_label_selector
from kybern.resources import FieldError, TableColumn
from kybern.validation import (
    invalid,
    not_supported,
    required,
    validate_immutable,
    validate_nonnegative,
)

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
JOB_RESTART_POLICIES = ("OnFailure", "Never")
COMPLETION_MODES = ("NonIndexed", "Indexed")
#: template fields a suspended Job that never started may still change (1.32)
SCHEDULING_DIRECTIVES = ("nodeSelector", "affinity", "tolerations", "schedulingGates")

# --------------------------------------------------------------------------- Job


def _generate_selector(job: JSON) -> None:
    """The job registry's generateSelector: uid/name labels on the template, uid selector."""
    meta = job.get("metadata") or {}
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    spec = ensure(job, "spec")
    template = ensure(spec, "template")
    labels = ensure(ensure(template, "metadata"), "labels")
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, name)
    if not uid:
        return  # the API server sets metadata.uid before defaulting; without it nothing to select
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, uid)
    selector = ensure(spec, "selector")
    ensure(selector, "matchLabels").setdefault(CONTROLLER_UID_LABEL, uid)


def default_job_spec(spec: JSON) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    failure_policy = spec.get("podFailurePolicy")
    for rule in dig(failure_policy, "rules", default=[]):
        for pattern in rule.get("onPodConditions") or []:
            if not pattern.get("status"):
                pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if failure_policy is not None else "TerminatingOrFailed"
    default_pod_template(spec.get("template"))


def default_job(job: JSON) -> None:
    spec = ensure(job, "spec")
    if not spec.get("manualSelector"):
        _generate_selector(job)
    default_job_spec(spec)
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False
    template_labels = dig(spec, "template", "metadata", "labels")
    meta = ensure(job, "metadata")
    if template_labels is not None and not meta.get("labels"):
        meta["labels"] = dict(template_labels)


def _job_spec_errors(spec: JSON, path: str, is_template: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ):
        errs.extend(validate_nonnegative(spec.get(key), f"{path}.{key}"))
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in COMPLETION_MODES:
            errs.append(not_supported(f"{path}.completionMode", mode, COMPLETION_MODES))
        elif mode == "Indexed" and spec.get("completions") is None:
            errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
    selector = spec.get("selector")
    template = spec.get("template")
    if is_template:
        if selector is not None:
            errs.append(invalid(f"{path}.selector", selector, "`selector` will be auto-generated"))
        if spec.get("manualSelector"):
            errs.append(not_supported(f"{path}.manualSelector", True, ("nil", "false")))
    else:
        if selector is None:
            errs.append(required(f"{path}.selector"))
        else:
            errs.extend(validate_label_selector(selector, f"{path}.selector"))
            labels = dig(template, "metadata", "labels")
            if not selector_matches(selector, labels):
                errs.append(
                    invalid(
                        f"{path}.template.metadata.labels",
                        GoStringMap.of(labels),
                        "`selector` does not match template `labels`",
                    )
                )
    if template is None:
        errs.append(required(f"{path}.template"))
        return errs
    errs.extend(validate_pod_template(template, f"{path}.template"))
    restart = dig(template, "spec", "restartPolicy", default="")
    if restart not in JOB_RESTART_POLICIES:
        errs.append(not_supported(f"{path}.template.spec.restartPolicy", restart, JOB_RESTART_POLICIES))
    return errs


def _template_without_directives(template: JSON | None) -> JSON:
    template = copy.deepcopy(template or {})
    for key in SCHEDULING_DIRECTIVES:
        (template.get("spec") or {}).pop(key, None)
    meta = template.get("metadata") or {}
    meta.pop("labels", None)
    meta.pop("annotations", None)
    return template


def validate_job(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    errs: list[FieldError] = []
    # ValidateGeneratedSelector runs before the spec checks
    if not spec.get("manualSelector") and spec.get("selector") is not None:
        uid = dig(new, "metadata", "uid", default="")
        if uid and dig(spec, "selector", "matchLabels", CONTROLLER_UID_LABEL) != uid:
            errs.append(invalid("spec.selector", spec["selector"], "`selector` not auto-generated"))
    errs.extend(_job_spec_errors(spec, "spec", is_template=False))
    if old is not None:
        old_spec = old.get("spec") or {}
        errs.extend(validate_immutable(spec.get("selector"), old_spec.get("selector"), "spec.selector"))
        suspended_unstarted = bool(old_spec.get("suspend")) and not dig(old, "status", "startTime")
        if suspended_unstarted:
            if _template_without_directives(spec.get("template")) != _template_without_directives(
                old_spec.get("template")
            ):
                errs.extend(
                    validate_immutable(spec.get("template"), old_spec.get("template"), "spec.template")
                )
        else:
            errs.extend(validate_immutable(spec.get("template"), old_spec.get("template"), "spec.template"))
        errs.extend(
            validate_immutable(
                spec.get("completionMode"), old_spec.get("completionMode"), "spec.completionMode"
            )
        )
        if spec.get("completionMode") != "Indexed":
            errs.extend(
                validate_immutable(spec.get("completions"), old_spec.get("completions"), "spec.completions")
            )
        errs.extend(
            validate_immutable(
                spec.get("podFailurePolicy"), old_spec.get("podFailurePolicy"), "spec.podFailurePolicy"
            )
        )
    return errs


JOB_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Status", "string", "", "Status of the job."),
    TableColumn("Completions", "string", "", "The number of pods which reached phase Succeeded."),
    TableColumn("Duration", "string", "", "Time required to complete the job."),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    TableColumn("Selector", "string", "", "A label query over pods that should match the pod count.", 1),
)


def _job_condition(conditions: list[JSON], kind: str) -> bool:
    for condition in conditions:
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def job_status_text(job: JSON) -> str:
    conditions = dig(job, "status", "conditions", default=[])
    if _job_condition(conditions, "Complete"):
        return "Complete"
    if _job_condition(conditions, "Failed"):
        return "Failed"
    if dig(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    if _job_condition(conditions, "Suspended"):
        return "Suspended"
    if _job_condition(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def job_row(job: JSON) -> list[Any]:
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    succeeded = status.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or datetime.now(UTC)) - start).total_seconds())
    names, images = layout_containers(dig(spec, "template", "spec", "containers"))
    return [
        name_of(job),
        job_status_text(job),
        completions,
        duration,
        age_of(job),
        names,
        images,
        selector_string(spec.get("selector")) or "<none>",
    ]


JOB_FIELD_SELECTORS = {"status.successful": lambda j: str(dig(j, "status", "succeeded", default=0))}

# --------------------------------------------------------------------------- CronJob

CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")


def default_cron_job(cj: JSON) -> None:
    spec = ensure(cj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    default_pod_template(dig(spec, "jobTemplate", "spec", "template"))


def validate_cron_job(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    name = dig(new, "metadata", "name", default="")
    if old is None and len(name) > 52:
        errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    spec = new.get("spec") or {}
    schedule = spec.get("schedule") or ""
    if not schedule:
        errs.append(required("spec.schedule"))
    elif "TZ" in schedule:
        errs.append(
            invalid(
                "spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            )
        )
    else:
        problem = schedule_error(schedule)
        if problem:
            errs.append(invalid("spec.schedule", schedule, problem))
    tz = spec.get("timeZone")
    if tz is not None:
        try:
            if not tz or tz.lower() == "local":
                raise zoneinfo.ZoneInfoNotFoundError(tz)
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errs.append(invalid("spec.timeZone", tz, f"unknown time zone {tz}"))
    policy = spec.get("concurrencyPolicy") or ""
    if not policy:
        errs.append(required("spec.concurrencyPolicy"))
    elif policy not in CONCURRENCY_POLICIES:
        errs.append(not_supported("spec.concurrencyPolicy", policy, CONCURRENCY_POLICIES))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs.extend(validate_nonnegative(spec.get(key), f"spec.{key}"))
    job_template = spec.get("jobTemplate")
    if job_template is None:
        errs.append(required("spec.jobTemplate"))
    else:
        errs.extend(
            _job_spec_errors(job_template.get("spec") or {}, "spec.jobTemplate.spec", is_template=True)
        )
    return errs


CRON_JOB_COLUMNS = (
    NAME_COLUMN,
    TableColumn(
        "Schedule", "string", "", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."
    ),
    TableColumn(
        "Timezone",
        "string",
        "",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    TableColumn(
        "Suspend",
        "boolean",
        "",
        "This flag tells the controller to suspend subsequent executions, it does not apply to "
        "already started executions.",
    ),
    TableColumn("Active", "integer", "", "A list of pointers to currently running jobs."),
    TableColumn(
        "Last Schedule",
        "string",
        "",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    TableColumn("Selector", "string", "", "A label query over pods that should match the pod count.", 1),
)


def cron_job_row(cj: JSON) -> list[Any]:
    spec = cj.get("spec") or {}
    status = cj.get("status") or {}
    last = status.get("lastScheduleTime")
    job_spec = dig(spec, "jobTemplate", "spec", default={})
    names, images = layout_containers(dig(job_spec, "template", "spec", "containers"))
    return [
        name_of(cj),
        spec.get("schedule") or "",
        spec.get("timeZone") or "<none>",
        bool_str(spec.get("suspend")),
        len(status.get("active") or []),
        since(last) if last else "<none>",
        age_of(cj),
        names,
        images,
        selector_string(job_spec.get("selector")) or "<none>",
    ]
