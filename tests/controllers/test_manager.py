"""The controller-manager component: --disable per controller, and leader election between two
servers on one database (only one runs the controllers; the other takes over)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import NO_KUBELET, kubectl_json, wait_for
from kybern.components import ComponentSpec, ConfigurationError, select_components
from kybern.plugins.controllers.manager import _seconds
from sqlalchemy.engine import make_url
from support.cli import assert_one_line_error, run_kybern
from support.cluster import Server, free_port, running_server
from support.pg import drop_database


def _spec(name: str, group: str | None = None) -> ComponentSpec:
    return ComponentSpec(name=name, factory=lambda ctx: None, group=group)  # type: ignore[arg-type,return-value]


def test_select_components_accepts_controller_names() -> None:
    specs = [_spec("apiserver"), _spec("controller-manager")]
    chosen = select_components(specs, "server", {"deployment", "replicaset"}, run_agent=False)
    assert [s.name for s in chosen] == ["apiserver", "controller-manager"]
    # names a plugin adds through kybern_controllers are known too
    chosen = select_components(specs, "server", {"my-crd"}, run_agent=False, controllers=["my-crd"])
    assert len(chosen) == 2
    with pytest.raises(ConfigurationError, match="unknown component 'nosuch'"):
        select_components(specs, "server", {"nosuch"}, run_agent=False)


def test_unknown_disable_name_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_kybern("server", "--disable-agent", "--data-dir", str(tmp_path), "--disable", "deploymnt")
    assert_one_line_error(result, "unknown component 'deploymnt'", "deployment")


def test_duration_syntax() -> None:
    assert [_seconds("x", v, 1) for v in ("15s", "2", "1m", "500ms", None)] == [15, 2, 60, 0.5, 1]
    for bad in ("soon", "0s", "-1"):
        with pytest.raises(ConfigurationError, match="--x"):
            _seconds("x", bad, 1)


def test_bad_leader_election_durations_end_the_server_with_a_message(tmp_path: Path) -> None:
    args = ["server", "--disable-agent", "--data-dir", str(tmp_path), *NO_KUBELET]
    args += ["--bind-address", "127.0.0.1", "--https-listen-port", str(free_port())]
    args += ["--leader-elect-lease-duration", "5s", "--leader-elect-renew-deadline", "10s"]
    result = run_kybern(*args, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr_lines[-1]
    assert last.startswith("kybern: error:") and "lease-duration > --leader-elect-renew-deadline" in last


def replicaset(name: str, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }
    )


def apply(server: Server, text: str, *args: str) -> None:
    path = server.data_dir.parent / f"obj-{uuid.uuid4().hex[:6]}.json"
    path.write_text(text)
    server.kubectl("apply", "-f", str(path), *args)


def pod_count(server: Server, selector: str) -> int:
    return len(kubectl_json(server, "get", "pods", "-l", selector)["items"])


def test_disable_single_controllers(tmp_path: Path) -> None:
    with running_server(tmp_path, "--disable", "deployment", "--disable", "namespace", *NO_KUBELET) as server:
        dep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "idle"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "idle"}},
                "template": {
                    "metadata": {"labels": {"app": "idle"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }
        apply(server, json.dumps(dep))
        apply(server, replicaset("busy", 2))
        # the ReplicaSet controller runs (so the manager is up and synced) ...
        wait_for(lambda: pod_count(server, "app=busy") == 2, what="2 pods of the ReplicaSet")
        wait_for(
            lambda: kubectl_json(server, "get", "rs", "busy").get("status", {}).get("replicas") == 2,
            what="ReplicaSet status",
        )
        # ... the Deployment controller does not
        assert [rs["metadata"]["name"] for rs in kubectl_json(server, "get", "rs")["items"]] == ["busy"]
        assert not kubectl_json(server, "get", "deploy", "idle").get("status", {}).get("observedGeneration")
        lease = kubectl_json(server, "get", "lease", "kube-controller-manager", "-n", "kube-system")
        assert lease["spec"]["holderIdentity"]
        assert lease["spec"]["leaseDurationSeconds"] == 15
        check_failed_creates(server)


def check_failed_creates(server: Server) -> None:
    """Creates refused by the API (here: the namespace is terminating and no namespace
    controller empties it) show as the ReplicaFailure condition with reason FailedCreate."""
    ns = "rs-fail"
    server.kubectl("create", "namespace", ns)
    apply(server, replicaset("doomed", 1), "-n", ns)
    wait_for(lambda: len(kubectl_json(server, "get", "pods", "-n", ns)["items"]) == 1, what="1 pod")
    server.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(
        lambda: kubectl_json(server, "get", "namespace", ns)["status"].get("phase") == "Terminating",
        what="namespace Terminating",
    )
    server.kubectl("scale", "rs", "doomed", "-n", ns, "--replicas=3")

    def failure() -> dict | None:
        status = kubectl_json(server, "get", "rs", "doomed", "-n", ns).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "ReplicaFailure"), None)

    cond = wait_for(failure, what="ReplicaFailure condition")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert "being terminated" in cond["message"]
    assert kubectl_json(server, "get", "rs", "doomed", "-n", ns)["status"]["replicas"] == 1


@pytest.fixture
def pg_url() -> Iterator[str]:
    admin = os.environ.get("KYBERN_TEST_PG_URL")
    if not admin:
        pytest.skip("KYBERN_TEST_PG_URL is not set")
    libpq = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kybern_cm_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(libpq, name)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_two_servers_one_leader_and_failover(tmp_path: Path, pg_url: str) -> None:
    fast = [*NO_KUBELET, "--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s"]
    fast += ["--leader-elect-retry-period", "1s"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", "--datastore-endpoint", pg_url, *fast) as a:
        with running_server(tmp_path / "b", "--datastore-endpoint", pg_url, *fast) as b:

            def holder() -> str:
                lease = kubectl_json(a, "get", "lease", "kube-controller-manager", "-n", "kube-system")
                return lease["spec"].get("holderIdentity") or ""

            first = wait_for(holder, what="a lease holder")
            apply(a, replicaset("shared", 2))
            wait_for(lambda: pod_count(b, "app=shared") == 2, what="2 pods")
            # exactly two pods: one manager acted (two would race to 4 and then delete)
            events = kubectl_json(a, "get", "events", "--field-selector", "reason=SuccessfulCreate")["items"]
            assert sum(e.get("count", 1) for e in events) == 2
            # the leader's log names its identity ("... became leader of kube-system/...")
            leader, standby = (a, b) if first in a.log_path.read_text(errors="replace") else (b, a)
            leader.stop()
            wait_for(lambda: holder_on(standby) not in ("", first), timeout=60, what="a new leader")
            standby.kubectl("scale", "rs", "shared", "--replicas=3")
            wait_for(lambda: pod_count(standby, "app=shared") == 3, timeout=60, what="3 pods after failover")
            lease = kubectl_json(standby, "get", "lease", "kube-controller-manager", "-n", "kube-system")
            assert lease["spec"]["leaseTransitions"] >= 1


def holder_on(server: Server) -> str:
    lease = kubectl_json(server, "get", "lease", "kube-controller-manager", "-n", "kube-system")
    return lease["spec"].get("holderIdentity") or ""
