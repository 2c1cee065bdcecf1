"""The per-pod shortcuts of the node agent (what a burst of pod starts on a thousand hollow
nodes reuses) against the general path they stand for."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kybern.plugins.kubelet import containers, dns
from kybern.plugins.kubelet.containers import master_service_env, service_env
from kybern.plugins.kubelet.dns import host_resolv_conf, pod_dns_config
from kybern.plugins.kubelet.podstatus import latest_two, now_rfc3339, rfc3339
from kybern.runtime import ContainerSpec, ContainerStatus, SandboxSpec
from kybern.runtimes.simulated.runtime import SimulatedRuntime


def _pod(namespace: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


@pytest.fixture
def host_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    monkeypatch.setattr(dns, "_HOST_FILE", conf)
    monkeypatch.setattr(dns, "_cluster_first", {})
    return conf


def test_cluster_first_shortcut_matches_the_general_path(host_file: Path) -> None:
    host = host_resolv_conf(host_file)
    for ns in ("default", "team-a", "team-b", "team-a"):
        for policy in ("ClusterFirst", "ClusterFirstWithHostNet", None):
            pod = _pod(ns, **({"dnsPolicy": policy} if policy else {}))
            quick = pod_dns_config(pod, "10.43.0.10", "cluster.local")
            assert quick == pod_dns_config(pod, "10.43.0.10", "cluster.local", host=host)
            assert quick is not None and quick.searches[0] == f"{ns}.svc.cluster.local"
            assert quick.searches[-1] == "corp.example"
    # each pod gets its own copy: changing one changes no other pod's
    first = pod_dns_config(_pod("x"), "10.43.0.10", "cluster.local")
    assert first is not None
    first.searches.append("mine.example")
    first.nameservers.clear()
    again = pod_dns_config(_pod("x"), "10.43.0.10", "cluster.local")
    assert again == pod_dns_config(_pod("x"), "10.43.0.10", "cluster.local", host=host)


def test_cluster_first_shortcut_sees_a_changed_host_file(
    host_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dns, "HOST_CHECK_S", 0.0)  # every start looks at the file again
    before = pod_dns_config(_pod("a"), "10.43.0.10", "cluster.local")
    assert before is not None and before.searches[-1] == "corp.example"
    host_file.write_text("nameserver 192.0.2.53\nsearch lab.example other.example\n")
    after = pod_dns_config(_pod("a"), "10.43.0.10", "cluster.local")
    assert after is not None and after.searches[-2:] == ["lab.example", "other.example"]
    assert after == pod_dns_config(_pod("a"), "10.43.0.10", "cluster.local", host=host_resolv_conf(host_file))
    host_file.unlink()  # no host file at all: the cluster's part alone
    gone = pod_dns_config(_pod("a"), "10.43.0.10", "cluster.local")
    assert gone is not None and gone.searches == ["a.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def test_dns_config_of_other_policies_takes_the_general_path(host_file: Path) -> None:
    extra = {"searches": ["x.example"], "options": [{"name": "ndots", "value": "2"}]}
    cfg = pod_dns_config(_pod("a", dnsConfig=extra), "10.43.0.10", "cluster.local")
    assert cfg is not None and cfg.searches[-1] == "x.example" and cfg.options == ["ndots:2"]
    assert pod_dns_config(_pod("a", hostNetwork=True), "10.43.0.10") is None
    assert pod_dns_config(_pod("a"), None) is None


class _Cache:
    def __init__(self, svc: dict[str, Any] | None) -> None:
        self.svc = svc

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.svc


def _service(ip: str, port: int) -> dict[str, Any]:
    return {"spec": {"clusterIP": ip, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}}


def test_master_service_env_is_remade_for_a_new_service_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "_master_env", (None, {}))

    async def main() -> None:
        cache = _Cache(_service("10.43.0.1", 443))
        first = await master_service_env(cache)  # type: ignore[arg-type]
        assert first == service_env(cache.svc)
        assert first["KUBERNETES_SERVICE_HOST"] == "10.43.0.1" and first["KUBERNETES_SERVICE_PORT"] == "443"
        first["KUBERNETES_SERVICE_HOST"] = "changed by a container's own env"
        assert await master_service_env(cache) == service_env(cache.svc)  # type: ignore[arg-type]
        cache.svc = _service("10.43.0.2", 6443)  # the cache read the Service again
        assert (await master_service_env(cache))["KUBERNETES_PORT"] == "tcp://10.43.0.2:6443"  # type: ignore[arg-type]
        cache.svc = None
        assert await master_service_env(cache) == {}  # type: ignore[arg-type]

    asyncio.run(main())


def test_rfc3339_matches_strftime_of_utc() -> None:
    def general(value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    rng = random.Random(7)
    base = datetime(2026, 11, 27, 3, 10, 30, tzinfo=UTC)
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
    for _ in range(500):
        value = (base + timedelta(seconds=rng.uniform(-1e8, 1e8))).astimezone(rng.choice(zones))
        assert rfc3339(value) == general(value)
    naive = datetime(2026, 1, 2, 3, 4, 5, 999_999)
    assert rfc3339(naive) == general(naive)  # taken as local time by both
    assert rfc3339(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)) == "1969-12-31T23:59:59Z"
    assert rfc3339(None) is None
    assert now_rfc3339() in (general(datetime.now(UTC) - timedelta(seconds=1)), general(datetime.now(UTC)))


def _status(name: str, attempt: int, cid: str) -> ContainerStatus:
    return ContainerStatus(
        id=cid, name=name, sandbox_id="s", pod_uid="u", namespace="n", pod_name="p", state="exited",
        image="i", attempt=attempt,
    )  # fmt: skip


def test_latest_two_matches_sorting_every_attempt() -> None:
    rng = random.Random(3)
    for _ in range(300):
        found = [_status(rng.choice("abc"), rng.randrange(4), f"c{i}") for i in range(rng.randrange(6))]
        for name in "abcd":
            mine = sorted((c for c in found if c.name == name), key=lambda c: c.attempt, reverse=True)
            expected = (mine[0] if mine else None, mine[1] if len(mine) > 1 else None)
            assert latest_two(found, name) == expected
            got = latest_two(found, name)
            assert all(g is e for g, e in zip(got, expected, strict=True))


def test_simulated_listings_are_snapshots_that_later_changes_leave_alone() -> None:
    async def main() -> None:
        rt = SimulatedRuntime("n")
        box = await rt.run_pod_sandbox(SandboxSpec(uid="u", namespace="ns", name="p"))
        cid = await rt.create_container(box, ContainerSpec(name="c", image="pause"))
        [created] = await rt.list_containers("u")
        await rt.start_container(cid)
        [running] = await rt.list_containers()
        assert created.state == "created" and created.started_at is None
        assert running.state == "running" and running.started_at is not None
        [listed_box] = await rt.list_sandboxes()
        await rt.stop_pod_sandbox("u", 0)
        assert running.state == "running" and listed_box.state == "ready" and box.state == "ready"
        [stopped] = await rt.list_containers("u")
        assert stopped.state == "exited" and stopped.exit_code == 143 and stopped.reason == "Error"
        assert [s.state for s in await rt.list_sandboxes()] == ["notready"]
        # unchanged records are handed out as they are (no copies for the relist)
        assert (await rt.list_containers())[0] is stopped

    asyncio.run(main())
