"""Helpers for the services and DNS tests: API client, and pods that look started.

No kubelet runs: like kube's endpoint controller integration tests, a pod "starts" when the
test writes its status (phase Running, podIP, Ready condition) through the status subresource.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kybern.client import ApiError, HttpApiClient
from support.cluster import Server


def client_for(server: Server) -> HttpApiClient:
    return HttpApiClient.from_kubeconfig(server.kubeconfig, user_agent="services-test")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_body(
    name: str,
    labels: dict[str, str],
    ports: list[dict[str, Any]] | None = None,
    node: str = "node-a",
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "registry.invalid/app:1"}
    if ports:
        container["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [container], "nodeName": node, **spec},
    }


async def set_status(client: HttpApiClient, namespace: str, name: str, ip: str, ready: bool) -> None:
    """What a kubelet reports for a started pod."""
    flag = "True" if ready else "False"
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now(),
        "conditions": [
            {"type": "Ready", "status": flag, "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now()},
        ],
    }
    for attempt in range(5):
        try:
            await client.patch("pods", name, {"status": status}, namespace=namespace, subresource="status")
            return
        except ApiError as exc:
            if not exc.conflict or attempt == 4:
                raise
            await asyncio.sleep(0.1)


async def start_pod(
    client: HttpApiClient, namespace: str, body: dict[str, Any], ip: str, ready: bool = True
) -> dict[str, Any]:
    pod = await client.create("pods", body, namespace)
    await set_status(client, namespace, pod["metadata"]["name"], ip, ready)
    return pod


async def until(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll (sync or async predicate) until truthy; the last value is in the failure."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: last value {value!r}")


async def get_or_none(
    client: HttpApiClient, resource: str, name: str, namespace: str
) -> dict[str, Any] | None:
    try:
        return await client.get(resource, name, namespace)
    except ApiError as exc:
        if exc.not_found:
            return None
        raise
