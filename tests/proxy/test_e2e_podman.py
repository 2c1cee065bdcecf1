"""The whole path on a real node: ``kybern server`` with its Podman agent and the proxy component
(auto mode picks nftables), the endpoint controllers, a Deployment of busybox httpd behind a
NodePort Service. Requests come from the host and from inside a pod (which may hit itself:
hairpin). Slow: containers really start."""

from __future__ import annotations

import collections
import json
import os
import re
import time
from collections.abc import Iterator

import pytest

from .nettopo import get, sh

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from kubelet.nodes import kubelet_cluster

    # a node name of our own: the proxy's table is kybern-proxy-<node name>
    with kubelet_cluster(
        tmp_path_factory.mktemp("proxy-e2e"), f"pxe2e{os.getpid()}", "--disable", "dns"
    ) as c:
        yield c


def manifests(image: str, replicas: int) -> list[str]:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "command": [
                                "sh",
                                "-c",
                                "hostname > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
        },
    }
    return [json.dumps(deployment), json.dumps(service)]


def _ready_pods(cluster) -> set[str]:  # type: ignore[no-untyped-def]
    pods = cluster.json("get", "pods", "-l", "app=web")["items"]
    return {
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    }


def _hits(url: str, n: int) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        try:
            seen[get(url, timeout=3).strip()] += 1
        except OSError as exc:
            seen[f"error: {exc}"] += 1
    return seen


def test_service_from_host_and_pod_follows_scaling(cluster) -> None:  # type: ignore[no-untyped-def]
    from kubelet.nodes import BUSYBOX

    for manifest in manifests(BUSYBOX, 3):
        cluster.apply(manifest)
    cluster.wait_for("3 ready pods", lambda: len(_ready_pods(cluster)) == 3, timeout=180)
    svc = cluster.json("get", "service", "web")
    cip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    url = f"http://{cip}:8080/"
    pods = _ready_pods(cluster)
    # no request before the proxy has the service: unmatched, it would leave by the default route
    table = f"kybern-proxy-pxe2e{os.getpid()}"
    cluster.wait_for(
        "the service in the proxy's map",
        lambda: cip in sh("nft", "list", "map", "ip", table, "service-ips", check=False).stdout,
        timeout=30,
    )
    cluster.wait_for("all 3 pods served", lambda: set(_hits(url, 30)) == pods, timeout=30)
    seen = _hits(url, 300)
    assert set(seen) == pods, seen
    # NodePort on the host's own (non-loopback) address
    address = sh("ip", "-4", "route", "get", "192.0.2.254").stdout
    src = re.search(r"src (\S+)", address)
    if src:
        assert get(f"http://{src.group(1)}:{node_port}/", timeout=5).strip() in pods
    # from inside a pod, by ClusterIP (busybox nc: this busybox's wget crashes on some errors)
    node = cluster.nodes[0]
    ctr = next(
        c["Id"]
        for c in node.containers()
        # the pod's infra container has "web" in its name too, but no shell
        if c.get("State") == "running" and not c.get("IsInfra") and any("web" in n for n in c["Names"])
    )
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    script = f"for i in 1 2 3 4 5 6 7 8 9; do {request} | nc {cip} 8080 | tail -n 1; done"
    out = node.cli("exec", ctr, "sh", "-c", script)
    answered = {line.strip() for line in out.splitlines() if line.strip()}
    assert answered and answered <= pods, out
    # scale down: the removed pod gets no more traffic once its endpoint is gone
    cluster.kubectl("scale", "deployment", "web", "--replicas", "2")
    cluster.wait_for("2 ready pods", lambda: len(_ready_pods(cluster)) == 2, timeout=120)
    remaining = _ready_pods(cluster)
    cluster.wait_for("only the 2 remaining pods served", lambda: set(_hits(url, 40)) == remaining, timeout=30)
    seen = _hits(url, 100)
    assert set(seen) == remaining, seen
    # scale up: the new pod is served soon after it turns Ready (figure printed, not asserted)
    cluster.kubectl("scale", "deployment", "web", "--replicas", "3")
    new_pod = cluster.wait_for(
        "a third ready pod", lambda: _ready_pods(cluster) - remaining, timeout=120, interval=0.1
    )
    ready_at = time.monotonic()
    cluster.wait_for("the new pod served", lambda: set(_hits(url, 10)) & new_pod, timeout=30, interval=0.05)
    print(f"new pod served {time.monotonic() - ready_at:.2f}s after the API showed it Ready")
