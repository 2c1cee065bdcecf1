"""Stand-ins for kubelets in controller tests: fake Node objects with Leases, pod phases.

Everything goes through the real API (no store access), the way a kubelet would report: a
node is a Node plus a Lease in kube-node-lease whose renewTime the test renews, pods finish by
a status patch.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from conftest import client_for, now, run
from kybern.client import ApiError, HttpApiClient
from support.cluster import Server

#: the control plane alone: the tests play kubelet, and nothing listens on fixed ports (DNS)
CONTROL_PLANE = ("--disable", "kubelet", "--disable", "dns")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_obj(server: Server, obj: dict[str, Any], namespace: str | None = None) -> None:
    """``kubectl apply -f`` of one object (written to a file next to the server's data)."""
    name = f"{obj['kind']}-{obj['metadata']['name']}-{abs(hash(json.dumps(obj, sort_keys=True)))}.json"
    path = server.data_dir.parent / name
    path.write_text(json.dumps(obj))
    args = ["apply", "-f", str(path)]
    if namespace:
        args += ["-n", namespace]
    server.kubectl(*args)


def node_manifest(name: str, ready: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
        },
    }


def node_status(ready: bool = True) -> dict[str, Any]:
    stamp = now()
    return {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else "container runtime is down",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            },
            *(
                {
                    "type": t,
                    "status": "False",
                    "reason": f"KubeletHasNo{t}",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
                for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
            ),
        ],
    }


async def register_node(client: HttpApiClient, name: str, labels: dict[str, str] | None = None) -> None:
    """What a kubelet does on start: Node, Ready status, Lease."""
    try:
        await client.create("nodes", node_manifest(name, labels=labels))
    except ApiError as exc:
        if not exc.already_exists:
            raise
    await client.patch("nodes", name, {"status": node_status(True)}, subresource="status")
    await renew_lease(client, name)


async def renew_lease(client: HttpApiClient, name: str) -> None:
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }
    try:
        await client.patch(
            "leases.coordination.k8s.io", name, {"spec": body["spec"]}, namespace="kube-node-lease"
        )
    except ApiError as exc:
        if not exc.not_found:
            raise
        await client.create("leases.coordination.k8s.io", body, "kube-node-lease")


async def set_node_ready(client: HttpApiClient, name: str, ready: bool = True) -> None:
    await client.patch("nodes", name, {"status": node_status(ready)}, subresource="status")


async def set_pod_phase(client: HttpApiClient, pod: dict[str, Any], phase: str) -> None:
    """A kubelet reporting a pod's containers ended (Succeeded or Failed) or running."""
    meta = pod["metadata"]
    ready = "True" if phase == "Running" else "False"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": now()}],
    }
    if phase in ("Succeeded", "Failed"):
        status["containerStatuses"] = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0 if phase == "Succeeded" else 1,
                        "reason": "Completed" if phase == "Succeeded" else "Error",
                        "finishedAt": now(),
                    }
                },
            }
            for c in pod["spec"]["containers"]
        ]
    for attempt in range(5):
        try:
            await client.patch(
                "pods", meta["name"], {"status": status}, namespace=meta["namespace"], subresource="status"
            )
            return
        except ApiError as exc:
            if not exc.conflict or attempt == 4:
                raise
            await asyncio.sleep(0.1)


def list_items(
    server: Server, resource: str, namespace: str | None = None, selector: str | None = None
) -> list:
    async def go() -> list:
        async with client_for(server) as client:
            return (await client.list(resource, namespace, label_selector=selector))["items"]

    return run(go())


def live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if not i["metadata"].get("deletionTimestamp")]
