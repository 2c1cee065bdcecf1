"""batch/v1: Job selector generation and defaults, CronJob schedules, validation and rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kybern.plugins.resources.batch_v1 import CRON_JOBS, JOBS
from kybern.plugins.resources.cron import schedule_error

from .helpers import decode, defaulted, errors, row, valid_defaulted

UID = "3f1b2c9e-0000-4000-8000-000000000001"
POD_TEMPLATE = {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}], "restartPolicy": "Never"}}


def job(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"template": copy.deepcopy(POD_TEMPLATE)}
    body.update(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": UID},
        "spec": body,
    }


def test_job_defaults_and_generated_selector() -> None:
    out = valid_defaulted(JOBS, job())
    spec = out["spec"]
    assert spec["completions"] == 1
    assert spec["parallelism"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["manualSelector"] is False
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}
    labels = {
        "batch.kubernetes.io/controller-uid": UID,
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": UID,
        "job-name": "pi",
    }
    assert spec["template"]["metadata"]["labels"] == labels
    assert out["metadata"]["labels"] == labels
    assert defaulted(JOBS, copy.deepcopy(out)) == out


def test_parallel_job_keeps_completions_unset() -> None:
    spec = defaulted(JOBS, job(parallelism=3))["spec"]
    assert "completions" not in spec
    assert spec["parallelism"] == 3


def test_manual_selector_is_left_alone() -> None:
    manual = job(manualSelector=True, selector={"matchLabels": {"app": "pi"}})
    manual["spec"]["template"]["metadata"] = {"labels": {"app": "pi"}}
    out = valid_defaulted(JOBS, manual)
    assert out["spec"]["selector"] == {"matchLabels": {"app": "pi"}}
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "pi"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"template": {"spec": {"containers": [{"name": "a", "image": "x"}], "restartPolicy": "Always"}}},
            [
                'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
                '"OnFailure", "Never"'
            ],
        ),
        ({"backoffLimit": -1}, ["spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"]),
        (
            {"completionMode": "Indexed", "parallelism": 2},
            ["spec.completions: Required value: when completion mode is Indexed"],
        ),
        (
            {"completionMode": "Sometimes"},
            [
                'spec.completionMode: Unsupported value: "Sometimes": supported values: '
                '"NonIndexed", "Indexed"'
            ],
        ),
    ],
)
def test_job_validation(spec: dict[str, Any], expected: list[str]) -> None:
    assert errors(JOBS, defaulted(JOBS, job(**spec))) == expected


def test_job_selector_must_be_generated() -> None:
    body = defaulted(JOBS, job())
    body["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}}
    out = errors(JOBS, body)
    assert out == [
        "spec.selector: Invalid value: {'matchLabels': {'batch.kubernetes.io/controller-uid': 'other'}}: "
        "`selector` not auto-generated",
        "spec.template.metadata.labels: Invalid value: "
        f'map[string]string{{"batch.kubernetes.io/controller-uid":"{UID}", '
        '"batch.kubernetes.io/job-name":"pi", '
        f'"controller-uid":"{UID}", "job-name":"pi"}}: `selector` does not match template `labels`',
    ]


def test_job_update_rules() -> None:
    old = defaulted(JOBS, job())
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:5.36"
    assert [e.split(":")[0] for e in errors(JOBS, new, old)] == ["spec.template"]
    new = copy.deepcopy(old)
    new["spec"]["completions"] = 2
    assert errors(JOBS, new, old) == ["spec.completions: Invalid value: 2: field is immutable"]
    new = copy.deepcopy(old)
    new["spec"]["suspend"] = True
    new["spec"]["parallelism"] = 4
    assert errors(JOBS, new, old) == []
    suspended = defaulted(JOBS, job(suspend=True))
    moved = copy.deepcopy(suspended)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    assert errors(JOBS, moved, suspended) == []


def _ago(**kw: int) -> str:
    return (datetime.now(UTC) - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_job_rows() -> None:
    body = defaulted(JOBS, job())
    body["status"] = {
        "succeeded": 1,
        "startTime": "2024-01-01T00:00:00Z",
        "completionTime": "2024-01-01T00:00:07Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    selector = f"batch.kubernetes.io/controller-uid={UID}"
    assert row(JOBS, body) == ["pi", "Complete", "1/1", "7s", "<unknown>", "pi", "perl:5.34", selector]
    running = defaulted(JOBS, job(parallelism=3, completions=None))
    running["status"] = {"startTime": _ago(minutes=4), "active": 3}
    cells = row(JOBS, running)
    assert cells[1:4] == ["Running", "0/1 of 3", "4m"]
    assert JOBS.field_selectors["status.successful"](decode(JOBS, body)) == "1"
    failed = copy.deepcopy(body)
    failed["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    assert row(JOBS, failed)[1] == "Failed"


def cron_job(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedule": "*/5 * * * *",
        "jobTemplate": {"spec": {"template": copy.deepcopy(POD_TEMPLATE)}},
    }
    body.update(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": body,
    }


def test_cron_job_defaults() -> None:
    spec = valid_defaulted(CRON_JOBS, cron_job())["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]  # Job defaults apply to Jobs only


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"schedule": "bad"},
            ['spec.schedule: Invalid value: "bad": expected exactly 5 fields, found 1: [bad]'],
        ),
        (
            {"schedule": "61 * * * *"},
            ['spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'],
        ),
        (
            {"schedule": "TZ=UTC 0 * * * *"},
            [
                'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, '
                "use timeZone field instead"
            ],
        ),
        (
            {"timeZone": "Mars/Olympus"},
            ['spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'],
        ),
        (
            {"concurrencyPolicy": "Sometimes"},
            [
                'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", '
                '"Forbid", "Replace"'
            ],
        ),
        (
            {"jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": POD_TEMPLATE}}},
            [
                "spec.jobTemplate.spec.selector: Invalid value: {'matchLabels': {'a': 'b'}}: "
                "`selector` will be auto-generated"
            ],
        ),
    ],
)
def test_cron_job_validation(spec: dict[str, Any], expected: list[str]) -> None:
    assert errors(CRON_JOBS, defaulted(CRON_JOBS, cron_job(**spec))) == expected


def test_cron_job_name_length() -> None:
    body = cron_job()
    body["metadata"]["name"] = "x" * 53
    assert errors(CRON_JOBS, defaulted(CRON_JOBS, body)) == [
        f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters'
    ]


def test_cron_job_row() -> None:
    body = defaulted(CRON_JOBS, cron_job(timeZone="Europe/Paris"))
    body["status"] = {"active": [{"name": "tick-1"}], "lastScheduleTime": _ago(seconds=30)}
    cells = row(CRON_JOBS, body)
    assert cells[:6] == ["tick", "*/5 * * * *", "Europe/Paris", "False", 1, "30s"]
    assert cells[7:] == ["pi", "perl:5.34", "<none>"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("@hourly", None),
        ("@every 1h30m", None),
        ("0 0 * * MON-FRI", None),
        ("*/15 9-17 1,15 JAN-jun ?", None),
        ("0 0 * * 7", "end of range (7) above maximum (6): 7"),
        ("@sometimes", "unrecognized descriptor: @sometimes"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("", "empty spec string"),
    ],
)
def test_cron_parser(spec: str, problem: str | None) -> None:
    assert schedule_error(spec) == problem
