"""Hollow nodes: one ``kybern server --runtime simulated --nodes N`` process runs N node agents
sharing one API client and one pod watch; each registers its Node and Lease, and pods bound
to them go Running with status written like real ones (no Podman needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import require_plugins

from .nodes import Cluster, hollow_cluster


@pytest.fixture(scope="module")
def hollow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_plugins("kubelet", "simulated")
    with hollow_cluster(tmp_path_factory.mktemp("hollow"), 5, "hollow-", "4", "8Gi", 20) as cluster:
        yield cluster


def test_hollow_nodes_register_with_leases_and_given_capacity(hollow: Cluster) -> None:
    def all_ready() -> list | None:
        nodes = hollow.ready_nodes()
        return nodes if len(nodes) == 5 else None

    nodes = hollow.wait_for("5 Ready hollow nodes", all_ready)
    assert sorted(n["metadata"]["name"] for n in nodes) == [f"hollow-{i}" for i in range(5)]
    for n in nodes:
        assert n["status"]["capacity"]["cpu"] == "4" and n["status"]["capacity"]["pods"] == "20"
        assert n["status"]["capacity"]["memory"] == "8Gi"
    cidrs = [n["spec"]["podCIDR"] for n in nodes]
    assert len(set(cidrs)) == 5, cidrs
    leases = hollow.json("get", "leases", "-n", "kube-node-lease")["items"]
    assert {lease["spec"]["holderIdentity"] for lease in leases} >= {f"hollow-{i}" for i in range(5)}


def test_pods_on_hollow_nodes_run_and_delete(hollow: Cluster) -> None:
    path = Path(hollow.server.data_dir.parent / "pods.yaml")
    path.write_text("\n---\n".join(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: h{i}}}
spec:
  nodeName: hollow-{i % 5}
  containers: [{{name: app, image: example/app:1.0}}]"""
        for i in range(10)
    ))  # fmt: skip
    hollow.kubectl("apply", "-f", str(path))

    def running() -> list | None:
        pods = hollow.json("get", "pods")["items"]
        ok = [p for p in pods if p.get("status", {}).get("phase") == "Running"
              and p["status"].get("containerStatuses", [{}])[0].get("ready")]  # fmt: skip
        return pods if len(ok) == 10 else None

    pods = hollow.wait_for("10 Running pods", running)
    assert all(p["status"]["podIP"] and p["status"]["hostIP"] for p in pods)
    hollow.kubectl("delete", "pods", "--all", "--wait=true", timeout=60)
    assert hollow.json("get", "pods")["items"] == []
