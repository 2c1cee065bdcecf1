"""What hollow nodes ask of the API server per pod: as a kubelet does for a pod without probes,
one status write when the pod goes Running, and nothing more while it keeps running (the
watch's echo of that write, relists and status checks cause no further requests). Counted from
the server's ``apiserver_request_total``, so every client of the process is included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import require_plugins
from support.metrics import request_counts

from .nodes import Cluster, hollow_cluster

PODS = 8


@pytest.fixture(scope="module")
def hollow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_plugins("kubelet", "simulated")
    with hollow_cluster(tmp_path_factory.mktemp("hollow-requests"), 4, "quiet-", "4", "8Gi", 20) as cluster:
        yield cluster


def _requests(cluster: Cluster) -> dict[str, float]:
    """verb + resource[/subresource] -> count, over every code."""
    return request_counts(cluster.kubectl("get", "--raw", "/metrics").stdout)


def test_one_status_write_per_running_pod(hollow: Cluster) -> None:
    hollow.wait_for("4 Ready hollow nodes", lambda: len(hollow.ready_nodes()) == 4)
    before = _requests(hollow)
    path = Path(hollow.server.data_dir.parent / "quiet-pods.yaml")
    path.write_text("\n---\n".join(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: q{i}}}
spec:
  nodeName: quiet-{i % 4}
  containers: [{{name: app, image: example/app:1.0}}]"""
        for i in range(PODS)
    ))  # fmt: skip
    hollow.kubectl("create", "-f", str(path))

    def running() -> list | None:
        pods = hollow.json("get", "pods")["items"]
        ok = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        return pods if len(ok) == PODS else None

    hollow.wait_for(f"{PODS} Running pods", running)
    # a few relists (2 s) and node status checks later, still nothing more was written
    time.sleep(5)
    after = _requests(hollow)
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    assert delta.get("PATCH pods/status") == PODS, delta
    # the kubelet reads pods only through its watch: no GETs of single pods, no relists
    assert "GET pods" not in delta, delta
