"""The simulated runtime (hollow nodes): the full ContainerRuntime protocol in memory."""

from __future__ import annotations

import asyncio
import time

import pytest
from kybern.pluginmanager import load_plugins
from kybern.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    ContainerNotFoundError,
    ContainerRuntime,
    ContainerSpec,
    ImagePullError,
    SandboxSpec,
)
from kybern.runtimes.simulated.runtime import EXEC_EXIT_CODE, NO_LOGS, SimulatedRuntime


def run(coro):
    return asyncio.run(coro)


def test_offered_through_the_hook_and_follows_the_protocol() -> None:
    pm = load_plugins().manager
    specs = {s.name: s for batch in pm.hook.kybern_container_runtimes() for s in batch}
    assert "simulated" in specs
    assert isinstance(SimulatedRuntime("n"), ContainerRuntime)


def test_pod_lifecycle() -> None:
    async def main() -> None:
        rt = SimulatedRuntime("hollow-0")
        await rt.ensure_network("kybern-10-42-7-0-24", "10.42.7.0/24")
        assert str(await rt.version()) == "simulated://0.1.0"
        assert (await rt.status()).ok
        ref = await rt.pull_image("nginx:1.27")
        assert ref.id.startswith("sha256:") and await rt.image_present("nginx:1.27") == ref
        box = await rt.run_pod_sandbox(SandboxSpec(uid="u1", namespace="ns", name="web"))
        assert box.state == "ready" and box.ip == "10.42.7.2"  # .1 is the gateway
        assert (await rt.run_pod_sandbox(SandboxSpec(uid="u1", namespace="ns", name="web"))).id == box.id
        cid = await rt.create_container(box, ContainerSpec(name="c", image="nginx:1.27"))
        [status] = await rt.list_containers("u1")
        assert status.state == "created" and status.labels[LABEL_CONTAINER_NAME] == "c"
        assert status.labels[LABEL_POD_UID] == "u1" and status.image_id == ref.id
        await rt.start_container(cid)
        [status] = await rt.list_containers()
        assert status.state == "running" and status.started_at is not None
        assert [chunk async for chunk in rt.container_logs(cid)] == [NO_LOGS]
        assert await rt.exec_sync(cid, ["true"]) == (
            EXEC_EXIT_CODE,
            b"simulated container: no processes to exec into\n",
        )
        session = await rt.exec(cid, ["sh"], tty=True)
        streams = [stream async for stream, _ in session.output()]
        assert streams == ["stdout"] and await session.wait() == EXEC_EXIT_CODE
        stats = await rt.stats(cid)
        assert stats.memory_usage_bytes > 0
        await rt.stop_pod_sandbox("u1", timeout_s=1)
        [status] = await rt.list_containers("u1")
        assert status.state == "exited" and status.exit_code == 143
        assert [s.state for s in await rt.list_sandboxes()] == ["notready"]
        assert await rt.remove_unowned({"other"}) == ["u1"]
        assert await rt.list_sandboxes() == [] and await rt.list_containers() == []
        with pytest.raises(ContainerNotFoundError):
            await rt.start_container(cid)
        # the address is reused
        again = await rt.run_pod_sandbox(SandboxSpec(uid="u2", namespace="ns", name="web2"))
        assert again.ip == box.ip

    run(main())


def test_never_pull_policy_and_bad_names() -> None:
    async def main() -> None:
        rt = SimulatedRuntime("n")
        with pytest.raises(ImagePullError) as info:
            await rt.pull_image("busybox", policy="Never")
        assert info.value.reason == "ErrImageNeverPull"
        with pytest.raises(ImagePullError) as info:
            await rt.pull_image("bad name")
        assert info.value.reason == "InvalidImageName"

    run(main())


def test_ten_thousand_pods_are_cheap() -> None:
    """1000 hollow nodes x 10 pods in one process: a record each, no tasks (figure printed)."""

    async def main() -> float:
        start = time.perf_counter()
        runtimes = [SimulatedRuntime(f"hollow-{i}") for i in range(1000)]
        for rt in runtimes:
            for j in range(10):
                box = await rt.run_pod_sandbox(
                    SandboxSpec(uid=f"{rt.node_name}-{j}", namespace="ns", name=f"p{j}")
                )
                await rt.start_container(
                    await rt.create_container(box, ContainerSpec(name="c", image="pause"))
                )
        total = 0
        for rt in runtimes:
            total += len(await rt.list_containers())
        assert total == 10_000
        return time.perf_counter() - start

    elapsed = run(main())
    print(f"\n10,000 simulated pods on 1000 hollow nodes in {elapsed:.2f}s")
