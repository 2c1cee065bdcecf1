"""A real ``kybern server`` per test module, and helpers that stand in for kubelets.

No kubelet runs here: like kube's controller integration tests, ``mark_pods_ready`` writes pod
status (phase Running, Ready condition) through the API, so controllers see pods become
available without containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kybern.client import ApiError, HttpApiClient
from support.cluster import Server, running_server

#: no node agent: the tests play kubelet (a real one would report the fake images as failing)
NO_KUBELET = ("--disable", "kubelet")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("controllers")
    with running_server(base, *NO_KUBELET) as srv:
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


class FakeKubelet:
    """Watches a namespace's pods and reports each new one Running and Ready (when
    ``ready_if(pod)`` says so), like a kubelet that starts containers instantly. It also keeps
    score of ready pods from the same watch, so tests can check a rollout never dipped below
    a floor."""

    def __init__(
        self, server: Server, namespace: str, ready_if: Callable[[dict], bool] | None = None
    ) -> None:
        self.server = server
        self.namespace = namespace
        self.ready_if = ready_if or (lambda pod: True)
        self.ready: set[str] = set()
        self.alive: set[str] = set()
        self.min_ready: int | None = None
        self.max_alive = 0
        self._task: asyncio.Task[None] | None = None
        self.client = client_for(server)

    def arm(self) -> None:
        """Start tracking the minimum number of ready pods from now on."""
        self.min_ready = len(self.ready)
        self.max_alive = len(self.alive)

    def _track(self) -> None:
        if self.min_ready is not None:
            self.min_ready = min(self.min_ready, len(self.ready))
            self.max_alive = max(self.max_alive, len(self.alive))

    async def _run(self) -> None:
        listing = await self.client.list("pods", self.namespace)
        rv = listing["metadata"]["resourceVersion"]
        pending = list(listing["items"])
        for pod in pending:
            await self._see("ADDED", pod)
        while True:
            async for event in self.client.watch("pods", self.namespace, resource_version=rv):
                if event.type in ("BOOKMARK", "ERROR"):
                    continue
                rv = event.object["metadata"]["resourceVersion"]
                await self._see(event.type, event.object)

    async def _see(self, type_: str, pod: dict) -> None:
        name = pod["metadata"]["name"]
        gone = type_ == "DELETED" or bool(pod["metadata"].get("deletionTimestamp"))
        conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
        if gone:
            self.ready.discard(name)
            self.alive.discard(name)
        else:
            self.alive.add(name)
            if conds.get("Ready") == "True":
                self.ready.add(name)
            else:
                self.ready.discard(name)
                if self.ready_if(pod):
                    try:
                        await set_pod_ready(self.client, pod)
                    except ApiError as exc:
                        if not exc.not_found:
                            raise
        self._track()

    async def __aenter__(self) -> FakeKubelet:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()


async def kubectl_async(server: Server, *args: str, check: bool = True, timeout: float = 90) -> Any:
    return await asyncio.to_thread(server.kubectl, *args, check=check, timeout=timeout)


async def until(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: last value {value!r}")
