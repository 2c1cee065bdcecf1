"""The issue's acceptance flow on a real node agent (Podman), scheduler and kubectl: a
Deployment of busybox httpd runs, heals, rolls to a new image tag within maxUnavailable 0 /
maxSurge 1, rolls back, scales. Slow: containers really start."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.timeout(600)]

NEW_TAG = "localhost/kybern-busybox:1.1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # the podman marker skips (or fails under CI) when Podman cannot run containers
    from kubelet.nodes import BUSYBOX, kubelet_cluster

    with kubelet_cluster(tmp_path_factory.mktemp("e2e")) as c:
        c.nodes[0].cli("tag", BUSYBOX, NEW_TAG)
        yield c


def manifest(image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "httpd"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "httpd"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {"app": "httpd"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 2,
                        "containers": [
                            {
                                "name": "web",
                                "image": image,
                                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        }
    )


def running(cluster, n: int) -> bool:
    pods = cluster.json("get", "pods", "-l", "app=httpd")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return len(live) == n and all((p.get("status") or {}).get("phase") == "Running" for p in live)


def test_deployment_on_real_nodes(cluster, tmp_path: Path) -> None:
    from kubelet.nodes import BUSYBOX

    cluster.apply(manifest(BUSYBOX))
    cluster.kubectl("rollout", "status", "deployment/httpd", "--timeout=180s", timeout=200)
    cluster.wait_for("3 running pods", lambda: running(cluster, 3), timeout=60)
    victim = cluster.json("get", "pods", "-l", "app=httpd")["items"][0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "--wait=false")
    cluster.wait_for(
        "a replacement",
        lambda: (
            running(cluster, 3)
            and victim
            not in {p["metadata"]["name"] for p in cluster.json("get", "pods", "-l", "app=httpd")["items"]}
        ),
        timeout=120,
    )
    cluster.kubectl("set", "image", "deployment/httpd", f"web={NEW_TAG}")
    cluster.kubectl("rollout", "status", "deployment/httpd", "--timeout=240s", timeout=260)
    images = {
        p["spec"]["containers"][0]["image"] for p in cluster.json("get", "pods", "-l", "app=httpd")["items"]
    }
    assert NEW_TAG in images
    history = cluster.kubectl("rollout", "history", "deployment/httpd").stdout
    assert [line.split()[0] for line in history.splitlines() if line[:1].isdigit()] == ["1", "2"]
    cluster.kubectl("rollout", "undo", "deployment/httpd")
    cluster.kubectl("rollout", "status", "deployment/httpd", "--timeout=240s", timeout=260)
    d = cluster.json("get", "deployment", "httpd")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == BUSYBOX
    cluster.kubectl("scale", "deployment/httpd", "--replicas=5")
    cluster.kubectl("rollout", "status", "deployment/httpd", "--timeout=180s", timeout=200)
    cluster.wait_for("5 running pods", lambda: running(cluster, 5), timeout=60)
    cluster.kubectl("scale", "deployment/httpd", "--replicas=0")
    cluster.wait_for(
        "no pods", lambda: not cluster.json("get", "pods", "-l", "app=httpd")["items"], timeout=120
    )
