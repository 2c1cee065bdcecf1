"""A real ``kybern server`` per test module, and helpers that stand in for kubelets.

No kubelet runs here: like kube's controller integration tests, ``mark_pods_ready`` writes pod
status (phase Running, Ready condition) through the API, so controllers see pods become
available without containers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kybern.client import ApiError, HttpApiClient
from support.cluster import Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("controllers")
    with running_server(base) as srv:
        yield srv


def client_for(server: Server) -> HttpApiClient:
    return HttpApiClient.from_kubeconfig(server.kubeconfig, user_agent="controllers-test")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def kubectl_json(server: Server, *args: str) -> dict[str, Any]:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.3, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; its last value is in the failure message."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last value {value!r}")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def set_pod_ready(client: HttpApiClient, pod: dict[str, Any], ready: bool = True) -> None:
    """What a kubelet would report for a started pod (Running; Ready as asked)."""
    meta = pod["metadata"]
    status = {
        "phase": "Running",
        "startTime": now(),
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": now()},
        ],
    }
    for attempt in range(5):
        try:
            await client.patch(
                "pods", meta["name"], {"status": status}, namespace=meta["namespace"], subresource="status"
            )
            return
        except ApiError as exc:
            # the API server answers a patch that raced with another write with 409 (see report)
            if not exc.conflict or attempt == 4:
                raise
            await asyncio.sleep(0.1)


def mark_pods_ready(server: Server, namespace: str, selector: str | None = None) -> int:
    """Report every not-yet-ready pod in ``namespace`` as Running and Ready; returns how many."""

    async def go() -> int:
        async with client_for(server) as client:
            pods = (await client.list("pods", namespace, label_selector=selector))["items"]
            n = 0
            for pod in pods:
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
                if conds.get("Ready") != "True":
                    await set_pod_ready(client, pod)
                    n += 1
            return n

    return run(go())


def create_namespace(server: Server, name: str) -> str:
    server.kubectl("create", "namespace", name)
    return name
