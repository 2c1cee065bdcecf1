"""Helpers for scheduler tests against a real server: Nodes made through the API (no kubelet:
status.allocatable and the Ready condition are written with kubectl like a kubelet would),
pods made and read with kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import yaml
from support.cluster import KUBECTL, Server

MOST_ALLOCATED_CONFIG = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packing
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - {name: cpu, weight: 1}
        - {name: memory, weight: 1}
"""


def apply(server: Server, objects: list[dict[str, Any]], *args: str) -> None:
    # a YAML stream (not a List: kubectl validates each kind against the server's OpenAPI)
    body = yaml.safe_dump_all(objects)

    cmd = [
        KUBECTL,
        "--kubeconfig",
        str(server.kubeconfig),
        "--cache-dir",
        str(server.cache_dir),
        "create",
        "-f",
        "-",
        *args,
    ]
    out = subprocess.run(cmd, input=body, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def make_nodes(server: Server, *specs: dict[str, Any]) -> None:
    """Each spec: name, cpu, memory, pods, labels, taints, unschedulable."""
    nodes = []
    for spec in specs:
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": spec["name"],
                    "labels": {"kubernetes.io/hostname": spec["name"], **spec.get("labels", {})},
                },
                "spec": {"taints": spec.get("taints", []), "unschedulable": spec.get("unschedulable", False)},
            }
        )
    apply(server, nodes)
    for spec in specs:
        alloc = {
            "cpu": spec.get("cpu", "4"),
            "memory": spec.get("memory", "8Gi"),
            "pods": str(spec.get("pods", 110)),
        }
        status = {
            "status": {
                "capacity": alloc,
                "allocatable": alloc,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node"}
                ],
            }
        }
        server.kubectl(
            "patch", "node", spec["name"], "--subresource=status", "--type=merge", "-p", json.dumps(status)
        )


def pod_manifest(
    name: str,
    namespace: str,
    cpu: str = "100m",
    memory: str = "64Mi",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "containers": [
                {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
            ],
            **spec,
        },
    }


def pods(server: Server, namespace: str) -> list[dict[str, Any]]:
    out = server.kubectl("get", "pods", "-n", namespace, "-o", "json")
    return json.loads(out.stdout)["items"]


def placement(server: Server, namespace: str) -> dict[str, str]:
    """pod name -> node name ("" while pending)."""
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods(server, namespace)}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def wait_bound(server: Server, namespace: str, count: int, timeout: float = 60) -> dict[str, str]:
    def check() -> dict[str, str] | None:
        where = placement(server, namespace)
        return where if sum(1 for n in where.values() if n) >= count else None

    return wait_for(f"{count} bound pods in {namespace}", check, timeout)


def scheduled_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return cond
    return None


def namespace(server: Server, name: str) -> str:
    server.kubectl("create", "namespace", name)
    return name


def cleanup(server: Server, namespace: str, *nodes: str) -> None:
    server.kubectl(
        "delete", "pods", "--all", "-n", namespace, "--force", "--grace-period=0", "--wait=false", check=False
    )
    if nodes:
        server.kubectl("delete", "nodes", *nodes, "--wait=false", check=False)
