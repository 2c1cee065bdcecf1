"""How much the Podman runtime asks of the Podman service on the paths that run often: a new
sandbox, an existing one, the node status check, the relist's node-wide listing, and nothing
after close. Real Podman (isolated, see podman_env); the REST calls are counted by wrapping
the runtime's one call method, nothing is faked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from kybern.runtime import ContainerSpec, RuntimeUnavailableError
from kybern.runtimes.podman.runtime import PodmanRuntime
from kybern.runtimes.podman.service import ping

from .podman_env import (
    BUSYBOX,
    open_runtime,
    podman_cli,
    release_dirs,
    run_container,
    sandbox_spec,
    wait_exited,
)

SLEEPER = ContainerSpec(name="app", image=BUSYBOX, command=["sleep", "3600"])
SLEEPER_2 = ContainerSpec(name="sidecar", image=BUSYBOX, command=["sleep", "3600"])


@pytest.fixture
def calls(runtime: PodmanRuntime, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(METHOD, path) of every REST call the runtime makes while the test runs."""
    seen: list[tuple[str, str]] = []
    original = PodmanRuntime._api

    async def counted(self: PodmanRuntime, method: str, path: str, *args: object, **kwargs: object) -> object:
        seen.append((method.upper(), path))
        return await original(self, method, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PodmanRuntime, "_api", counted)
    yield seen


def test_new_sandbox_takes_three_calls_and_reports_its_address(
    runtime: PodmanRuntime, calls: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        spec = sandbox_spec("calls")
        sandbox = await runtime.run_pod_sandbox(spec)
        assert [c[0] for c in calls] == ["POST", "POST", "GET"]
        assert calls[0][1] == "/pods/create" and calls[1][1].endswith("/start")
        assert calls[2][1].endswith("_infra/json")  # the infra container, by the name given it
        assert sandbox.state == "ready" and sandbox.ip and sandbox.network == runtime.config.network
        assert sandbox.uid == spec.uid and sandbox.created_at is not None
        # the same address as Podman shows for the pod's infra container
        infra = podman_cli(runtime.config, "pod", "inspect", sandbox.id, "--format", "{{.InfraContainerID}}")
        ip = podman_cli(
            runtime.config, "inspect", infra.strip(), "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )  # fmt: skip
        assert ip.strip() == sandbox.ip
        # asked again (an agent restart): the name clashes and the running sandbox is adopted
        calls.clear()
        again = await runtime.run_pod_sandbox(spec)
        assert again.id == sandbox.id and again.ip == sandbox.ip and again.state == "ready"
        assert ("POST", "/pods/create") in calls and not any(c[1].endswith("/start") for c in calls)
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_dead_sandbox_is_replaced_under_the_same_name(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("dead")
        first = await runtime.run_pod_sandbox(spec)
        podman_cli(runtime.config, "pod", "stop", "-t", "0", first.id)
        second = await runtime.run_pod_sandbox(spec)
        assert second.id != first.id and second.state == "ready" and second.ip
        pods = podman_cli(runtime.config, "pod", "ps", "-q", "--no-trunc").split()
        assert second.id in pods and first.id not in pods
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_status_reads_info_once_then_pings(runtime: PodmanRuntime, calls: list[tuple[str, str]]) -> None:
    async def main() -> None:
        runtime._host = None  # as if just connected
        first = await runtime.status()
        assert first.ok, first.reason
        assert ("GET", "/info") in calls
        calls.clear()
        for _ in range(3):
            assert (await runtime.status()).ok
        assert calls == [("GET", "/_ping")] * 3

    asyncio.run(main())


def test_node_listing_is_reused_until_something_changes(
    runtime: PodmanRuntime, calls: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        spec = sandbox_spec("relist")
        sandbox = await runtime.run_pod_sandbox(spec)
        cid = await run_container(runtime, sandbox, SLEEPER)
        [first] = [c for c in await runtime.list_containers() if c.id == cid]
        assert first.state == "running"
        calls.clear()
        # nothing changed: the relist's listing costs the service nothing
        again = await runtime.list_containers()
        assert calls == [] and [c.id for c in again if c.id == cid] == [cid]
        # a container dying behind the runtime's back (conmon's exit file) is seen at once
        podman_cli(runtime.config, "kill", cid)
        status = await wait_exited(runtime, spec.uid, "app")
        assert status.id == cid
        calls.clear()
        listed = {c.id: c for c in await runtime.list_containers()}
        assert ("GET", "/containers/json") in calls and listed[cid].state == "exited"
        # a change made through the runtime too
        other = await run_container(runtime, sandbox, SLEEPER_2)
        calls.clear()
        assert other in {c.id for c in await runtime.list_containers()}
        assert ("GET", "/containers/json") in calls
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_a_closed_runtime_starts_no_service_again(
    podman_assets: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A call still in flight when the agent stops used to find the socket dead and start a new
    service, which then outlived the agent."""
    conf, archive = podman_assets

    async def main() -> None:
        rt = await open_runtime(tmp_path_factory.mktemp("closing"), conf, archive, "closing")
        sock = rt.socket
        try:
            await rt.remove_network(rt.config.network or "")
        finally:
            await rt.close()
        try:
            with pytest.raises(RuntimeUnavailableError):
                await rt.list_containers()
            with pytest.raises(RuntimeUnavailableError):  # a call that was already in a thread
                await asyncio.to_thread(rt._connect)
            assert rt.service.process is None and ping(sock) is not None
        finally:
            release_dirs(rt.config)

    asyncio.run(main())
