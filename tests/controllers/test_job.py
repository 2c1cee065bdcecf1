"""The Job controller with kubectl: completions and parallelism with pod successes and failures
(the tests play kubelet), backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished,
Indexed completion, ``kubectl wait --for=condition=complete|failed``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import client_for, create_namespace, kubectl_json, run, wait_for
from support.cluster import Server, running_server
from support_nodes import CONTROL_PLANE, apply_obj, list_items, live, set_pod_phase

pytestmark = pytest.mark.timeout(180)

TRACKING = "batch.kubernetes.io/job-tracking"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No kubelet, and a 1 s base for the failure back-off (kube's 10 s would slow the tests)."""
    base: Path = tmp_path_factory.mktemp("jobs")
    with running_server(base, *CONTROL_PLANE, "--job-pod-failure-backoff", "1s") as srv:
        yield srv


def job(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}
            },
            **spec,
        },
    }


def job_pods(server: Server, ns: str, name: str) -> list[dict]:
    return list_items(server, "pods", ns, f"batch.kubernetes.io/job-name={name}")


def active_pods(server: Server, ns: str, name: str) -> list[dict]:
    return [
        p
        for p in live(job_pods(server, ns, name))
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]


def finish(server: Server, pod: dict, phase: str) -> None:
    async def go() -> None:
        async with client_for(server) as client:
            await set_pod_phase(client, pod, phase)

    run(go())


def conditions(server: Server, ns: str, name: str) -> dict[str, dict]:
    status = kubectl_json(server, "get", "job", name, "-n", ns).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or [] if c["status"] == "True"}


def test_completions_with_parallelism_and_a_failure(server: Server) -> None:
    ns = create_namespace(server, "job-basic")
    apply_obj(server, job("work", completions=3, parallelism=2), ns)
    first = wait_for(lambda: (a := active_pods(server, ns, "work")) and len(a) == 2 and a, what="2 active")
    for pod in first:
        assert TRACKING in pod["metadata"]["finalizers"]
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert len(job_pods(server, ns, "work")) == 2  # parallelism caps the active pods

    finish(server, first[0], "Failed")
    finish(server, first[1], "Succeeded")
    # the failed one is replaced (after the back-off), and one more is needed for completions 3
    second = wait_for(
        lambda: (
            (a := active_pods(server, ns, "work"))
            and len(a) == 2
            and {p["metadata"]["uid"] for p in a}.isdisjoint(p["metadata"]["uid"] for p in first)
            and a
        ),
        what="2 new active pods",
    )
    status = wait_for(
        lambda: (
            (s := kubectl_json(server, "get", "job", "work", "-n", ns)["status"])
            and s.get("failed") == 1
            and s.get("succeeded") == 1
            and s
        ),
        what="counts 1 failed 1 succeeded",
    )
    assert status["active"] == 2 and status.get("startTime")
    for pod in second:
        finish(server, pod, "Succeeded")
    server.kubectl("wait", "--for=condition=complete", "job/work", "-n", ns, "--timeout=60s", timeout=90)
    final = kubectl_json(server, "get", "job", "work", "-n", ns)["status"]
    assert final["succeeded"] == 3 and final["failed"] == 1
    assert final.get("completionTime") and not final.get("active")
    types = [c["type"] for c in final["conditions"]]
    assert types.index("SuccessCriteriaMet") < types.index("Complete")
    assert final.get("uncountedTerminatedPods", {}) == {}
    # every pod was counted and released
    assert all(TRACKING not in (p["metadata"].get("finalizers") or []) for p in job_pods(server, ns, "work"))
    row = server.kubectl("get", "job", "work", "-n", ns).stdout
    assert "3/3" in row and "Complete" in row


def test_backoff_limit_fails_the_job(server: Server) -> None:
    ns = create_namespace(server, "job-fail")
    apply_obj(server, job("flaky", completions=2, parallelism=2, backoffLimit=1), ns)
    pods = wait_for(lambda: (a := active_pods(server, ns, "flaky")) and len(a) == 2 and a, what="2 active")
    for pod in pods:
        finish(server, pod, "Failed")
    server.kubectl("wait", "--for=condition=failed", "job/flaky", "-n", ns, "--timeout=60s", timeout=90)
    conds = conditions(server, ns, "flaky")
    assert conds["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conds["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    status = kubectl_json(server, "get", "job", "flaky", "-n", ns)["status"]
    assert status["failed"] == 2 and not status.get("completionTime")
    assert active_pods(server, ns, "flaky") == []


def test_active_deadline_stops_the_job(server: Server) -> None:
    ns = create_namespace(server, "job-deadline")
    apply_obj(server, job("slow", activeDeadlineSeconds=2), ns)
    wait_for(lambda: active_pods(server, ns, "slow"), what="a pod")
    server.kubectl("wait", "--for=condition=failed", "job/slow", "-n", ns, "--timeout=60s", timeout=90)
    assert conditions(server, ns, "slow")["Failed"]["reason"] == "DeadlineExceeded"
    wait_for(lambda: not job_pods(server, ns, "slow"), what="its pod deleted")


def test_ttl_after_finished_deletes_the_job_and_its_pods(server: Server) -> None:
    ns = create_namespace(server, "job-ttl")
    apply_obj(server, job("brief", ttlSecondsAfterFinished=1), ns)
    pod = wait_for(lambda: active_pods(server, ns, "brief"), what="a pod")[0]
    finish(server, pod, "Succeeded")
    wait_for(
        lambda: server.kubectl("get", "job", "brief", "-n", ns, check=False).returncode != 0,
        what="job deleted after its TTL",
    )
    wait_for(lambda: not job_pods(server, ns, "brief"), what="its pods deleted")


def test_indexed_job_runs_each_index_once(server: Server) -> None:
    ns = create_namespace(server, "job-indexed")
    apply_obj(server, job("idx", completions=3, parallelism=3, completionMode="Indexed"), ns)
    pods = wait_for(lambda: (a := active_pods(server, ns, "idx")) and len(a) == 3 and a, what="3 active")
    indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"]
    for pod in pods:
        finish(server, pod, "Succeeded")
    server.kubectl("wait", "--for=condition=complete", "job/idx", "-n", ns, "--timeout=60s", timeout=90)
    assert kubectl_json(server, "get", "job", "idx", "-n", ns)["status"]["completedIndexes"] == "0-2"


def test_deleting_a_job_releases_and_removes_its_pods(server: Server) -> None:
    ns = create_namespace(server, "job-delete")
    apply_obj(server, job("gone", parallelism=2, completions=4), ns)
    wait_for(lambda: len(active_pods(server, ns, "gone")) == 2, what="2 active")
    server.kubectl("delete", "job", "gone", "-n", ns, "--timeout=60s", timeout=90)
    wait_for(lambda: not job_pods(server, ns, "gone"), what="pods gone (finalizers removed)")


# --- CronJob ------------------------------------------------------------------------------------


def test_cron_schedule_parsing() -> None:
    from datetime import UTC, datetime

    from kybern.plugins.controllers import cronschedule

    at = datetime(2026, 3, 14, 10, 7, tzinfo=UTC)  # a Saturday
    assert cronschedule.parse("*/15 * * * *").next_after(at) == datetime(2026, 3, 14, 10, 15, tzinfo=UTC)
    assert cronschedule.parse("@daily").next_after(at) == datetime(2026, 3, 15, 0, 0, tzinfo=UTC)
    assert cronschedule.parse("0 9 * * mon-fri").next_after(at) == datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
    # day-of-month OR day-of-week when both are restricted (cron's rule)
    assert cronschedule.parse("0 0 1 * sun").next_after(at) == datetime(2026, 3, 15, 0, 0, tzinfo=UTC)
    assert cronschedule.parse("30 2 * feb 7").next_after(at).month == 2
    berlin = cronschedule.parse("0 8 * * *", "Europe/Berlin").next_after(at)
    assert berlin is not None and berlin.astimezone(UTC) == datetime(2026, 3, 15, 7, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        cronschedule.parse("61 * * * *")
    with pytest.raises(ValueError):
        cronschedule.parse("* * * *")


def test_cronjob_runs_a_missed_schedule_and_tracks_the_job(server: Server) -> None:
    ns = create_namespace(server, "cron")
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/5 * * * *",
            "suspend": True,
            "jobTemplate": job("x")["spec"] and {"spec": job("x")["spec"]},
        },
    }
    apply_obj(server, cron, ns)

    async def backdate() -> None:
        async with client_for(server) as client:
            await client.patch(
                "cronjobs.batch",
                "tick",
                {"status": {"lastScheduleTime": "2020-01-01T00:00:00Z"}},
                namespace=ns,
                subresource="status",
            )

    run(backdate())
    assert list_items(server, "jobs.batch", ns) == []  # suspended: nothing runs
    server.kubectl("patch", "cronjob", "tick", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    jobs = wait_for(lambda: list_items(server, "jobs.batch", ns), what="the missed run's job")
    assert len(jobs) == 1  # only the most recent missed time runs
    created = jobs[0]
    minutes = int(created["metadata"]["name"].rsplit("-", 1)[1])
    assert minutes % 5 == 0 and created["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in created["metadata"]["annotations"]
    status = wait_for(
        lambda: (
            (s := kubectl_json(server, "get", "cronjob", "tick", "-n", ns).get("status") or {})
            and s.get("active")
            and s
        ),
        what="status.active",
    )
    assert status["active"][0]["name"] == created["metadata"]["name"]
    assert status["lastScheduleTime"] > "2020-01-01T00:00:00Z"
    pod = wait_for(lambda: active_pods(server, ns, created["metadata"]["name"]), what="its pod")[0]
    finish(server, pod, "Succeeded")
    done = wait_for(
        lambda: (
            (s := kubectl_json(server, "get", "cronjob", "tick", "-n", ns).get("status") or {})
            and not s.get("active")
            and s.get("lastSuccessfulTime")
            and s
        ),
        what="job seen completed",
    )
    assert done["lastScheduleTime"] == status["lastScheduleTime"]
    # kubectl's manual run from the template
    server.kubectl("create", "job", "by-hand", "--from=cronjob/tick", "-n", ns)
    assert (
        kubectl_json(server, "get", "job", "by-hand", "-n", ns)["metadata"]["ownerReferences"][0]["name"]
        == "tick"
    )


def test_pod_failure_policy_ignore_and_fail_job(server: Server) -> None:
    ns = create_namespace(server, "job-policy")
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    apply_obj(server, job("pfp", backoffLimit=0, podFailurePolicy=policy), ns)
    pod = wait_for(lambda: active_pods(server, ns, "pfp"), what="a pod")[0]

    async def disrupted(p: dict, exit_code: int, condition: str | None) -> None:
        status: dict = {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code, "reason": "Error"}},
                }
            ],
        }
        if condition:
            status["conditions"] = [{"type": condition, "status": "True", "reason": "EvictionByEvictionAPI"}]
        async with client_for(server) as client:
            await client.patch(
                "pods", p["metadata"]["name"], {"status": status}, namespace=ns, subresource="status"
            )

    # an evicted pod is ignored: no failure counted (backoffLimit 0 would fail the job), replaced
    run(disrupted(pod, 137, "DisruptionTarget"))
    second = wait_for(
        lambda: (
            (a := active_pods(server, ns, "pfp")) and a[0]["metadata"]["uid"] != pod["metadata"]["uid"] and a
        ),
        what="replacement",
    )[0]
    assert not (kubectl_json(server, "get", "job", "pfp", "-n", ns)["status"].get("failed"))
    # exit code 42 fails the job at once
    run(disrupted(second, 42, None))
    server.kubectl("wait", "--for=condition=failed", "job/pfp", "-n", ns, "--timeout=60s", timeout=90)
    failed = conditions(server, ns, "pfp")["Failed"]
    assert failed["reason"] == "PodFailurePolicy"
    assert "exit code 42 matching FailJob rule at index 0" in failed["message"]


def test_a_job_managed_by_another_controller_is_left_alone(server: Server) -> None:
    ns = create_namespace(server, "job-managed")
    apply_obj(server, job("theirs", managedBy="example.com/other-controller"), ns)
    apply_obj(server, job("ours"), ns)
    wait_for(lambda: active_pods(server, ns, "ours"), what="our job's pod")  # the controller is alive
    assert job_pods(server, ns, "theirs") == []
    assert not kubectl_json(server, "get", "job", "theirs", "-n", ns).get("status")
