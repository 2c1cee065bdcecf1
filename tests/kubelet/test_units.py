"""The kubelet's pure parts: back-off arithmetic, pod CIDR choice, the atomic writer of
ConfigMap/Secret files, env resolution, and status building from runtime records."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kybern.plugins.kubelet.backoff import Backoff
from kybern.plugins.kubelet.containers import expand, resolve_env
from kybern.plugins.kubelet.nodeinfo import pick_pod_cidr
from kybern.plugins.kubelet.podstatus import build_status, qos_class
from kybern.plugins.kubelet.podworker import pull_policy
from kybern.plugins.kubelet.volumes import write_atomic
from kybern.runtime import ContainerStatus


def test_backoff_doubles_to_the_cap_and_resets_after_long_quiet() -> None:
    b = Backoff(10, 300)
    t = time.time()
    assert b.remaining("k", t) == 0  # first failure: retry at once
    assert [b.next("k", t + i) for i in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert 0 < b.remaining("k", time.time()) <= 300
    # a failure more than 10 minutes after the last one starts over
    assert b.next("k", t + 6 + 601) == 10


def test_pod_cidr_is_deterministic_and_avoids_taken_ranges() -> None:
    first = pick_pod_cidr("node-a", set())
    assert first == pick_pod_cidr("node-a", set()) and first.startswith("10.42.") and first.endswith(".0/24")
    second = pick_pod_cidr("node-a", {first})
    assert second != first and second.endswith("/24")
    assert pick_pod_cidr("n", set(), "10.128.0.0/9").startswith("10.")


def test_atomic_writer_swaps_data_link_and_drops_old_files(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": (b"1", 0o644), "b": (b"2", 0o400)})
    assert (target / "a").read_text() == "1" and os.readlink(target / "a") == "..data/a"
    assert (target / "b").stat().st_mode & 0o777 == 0o400
    first = os.readlink(target / "..data")
    assert not write_atomic(target, {"a": (b"1", 0o644), "b": (b"2", 0o400)}), "unchanged: no swap"
    assert write_atomic(target, {"a": (b"3", 0o644)})
    assert (target / "a").read_text() == "3" and not (target / "b").exists()
    assert os.readlink(target / "..data") != first and not (target / first).exists()


def test_env_expansion_and_image_pull_policy() -> None:
    assert expand("$(A)-$(B)-$$(A)-$(MISSING)", {"A": "x", "B": "y"}) == "x-y-$(A)-$(MISSING)"
    assert pull_policy({"image": "busybox"}) == "Always"
    assert pull_policy({"image": "busybox:latest"}) == "Always"
    assert pull_policy({"image": "localhost:5000/busybox:1.0"}) == "IfNotPresent"
    assert pull_policy({"image": "busybox:1.0", "imagePullPolicy": "Never"}) == "Never"


class _Cache:
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, name))


def test_env_reads_configmaps_secrets_fields_and_resources() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}],
        },
        "status": {"podIP": "10.0.0.5"},
    }
    ctr = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k", "optional": True}}},
            {"name": "SUM", "value": "$(CM_a)/$(S)"},
        ],
    }
    cache = _Cache(
        {("configmaps", "cm"): {"data": {"a": "1"}}, ("secrets", "sec"): {"data": {"k": "c2VjcmV0"}}}
    )
    env = dict(asyncio.run(resolve_env(pod, ctr, cache, {"cpu": "2"})))  # type: ignore[arg-type]
    assert env == {"CM_a": "1", "S": "secret", "IP": "10.0.0.5", "APP": "x", "MEM": "64", "SUM": "1/secret"}


def _ctr(name: str, state: str, attempt: int = 0, exit_code: int | None = None) -> ContainerStatus:
    now = datetime.now(UTC)
    return ContainerStatus(
        id=f"{name}-{attempt}", name=name, sandbox_id="s", pod_uid="u", namespace="ns", pod_name="p",
        state=state, image="img", image_id="sha", exit_code=exit_code, started_at=now - timedelta(seconds=5),
        finished_at=now if state == "exited" else None, attempt=attempt,
    )  # type: ignore[arg-type]  # fmt: skip


def _status(pod: dict[str, Any], ctrs: list[ContainerStatus], waiting: dict | None = None) -> dict[str, Any]:
    return build_status(
        pod, ctrs, scheme="podman", pod_ip="10.1.0.2", host_ip="192.0.2.1", sandbox_ready=True,
        waiting=waiting or {}, readiness=lambda _: True, started=lambda _: True,
    )  # fmt: skip


def test_status_of_running_crashing_and_finished_pods() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "img"}]}}
    running = _status(pod, [_ctr("a", "exited", 0, 137), _ctr("a", "running", 1)])
    cs = running["containerStatuses"][0]
    assert running["phase"] == "Running" and cs["restartCount"] == 1 and cs["ready"]
    assert cs["lastState"]["terminated"]["exitCode"] == 137 and cs["containerID"] == "podman://a-1"
    conds = {c["type"]: c["status"] for c in running["conditions"]}
    assert conds["Ready"] == "True" and conds["Initialized"] == "True"
    crashing = _status(pod, [_ctr("a", "exited", 2, 1)], {"a": ("CrashLoopBackOff", "back-off 20s")})
    cs = crashing["containerStatuses"][0]
    assert (
        cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        and cs["lastState"]["terminated"]["exitCode"] == 1
    )
    assert crashing["phase"] == "Running" and cs["ready"] is False
    never = {**pod, "spec": {**pod["spec"], "restartPolicy": "Never"}}
    assert _status(never, [_ctr("a", "exited", 0, 0)])["phase"] == "Succeeded"
    assert _status(never, [_ctr("a", "exited", 0, 2)])["phase"] == "Failed"
    waiting = _status(pod, [], {"a": ("ImagePullBackOff", "Back-off pulling image")})
    assert waiting["phase"] == "Pending"
    assert waiting["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"


def test_init_containers_hold_the_pod_in_pending() -> None:
    pod = {"spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}}
    st = _status(pod, [_ctr("i1", "exited", 0, 0), _ctr("i2", "running")])
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    init = {c["type"]: c for c in st["conditions"]}["Initialized"]
    assert init["status"] == "False" and init["message"] == "containers with incomplete status: [i2]"


def test_qos_classes() -> None:
    def pod(res: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"containers": [{"name": "a", "resources": res}]}}

    assert qos_class(pod({})) == "BestEffort"
    assert qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    assert qos_class(pod({"requests": {"cpu": "100m"}})) == "Burstable"
    assert (
        qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})) == "Burstable"
    )


def test_probe_handlers_tcp_and_http_against_real_sockets() -> None:
    from aiohttp import web
    from kybern.plugins.kubelet.probes import resolve_named_port, run_handler

    async def scenario() -> list[tuple[bool, str]]:
        app = web.Application()

        async def ok(_: web.Request) -> web.Response:
            return web.Response(text="fine")

        async def bad(_: web.Request) -> web.Response:
            return web.Response(status=500)

        app.router.add_get("/ok", ok)
        app.router.add_get("/bad", bad)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            named = resolve_named_port({"httpGet": {"path": "/ok", "port": "web"}},
                                       {"ports": [{"name": "web", "containerPort": port}]})  # fmt: skip
            return [
                await run_handler(None, "", {"tcpSocket": {"port": port}}, "127.0.0.1", 2),  # type: ignore[arg-type]
                await run_handler(None, "", named, "127.0.0.1", 2),  # type: ignore[arg-type]
                await run_handler(None, "", {"httpGet": {"path": "/bad", "port": port}}, "127.0.0.1", 2),  # type: ignore[arg-type]
            ]
        finally:
            await runner.cleanup()

    tcp, http_ok, http_bad = asyncio.run(scenario())
    assert tcp[0] and http_ok[0]
    assert not http_bad[0] and "statuscode: 500" in http_bad[1]
    from support.cluster import free_port

    closed = asyncio.run(run_handler(None, "", {"tcpSocket": {"port": free_port()}}, "127.0.0.1", 2))  # type: ignore[arg-type]
    assert not closed[0] and "dial tcp" in closed[1]
