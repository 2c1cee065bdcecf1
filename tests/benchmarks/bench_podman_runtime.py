"""Podman runtime benchmark: how long a pod takes from "create" to "running".

Not a test (prints figures, asserts nothing timed). Run it alone, as root with Podman:

    .venv/bin/python tests/benchmarks/bench_podman_runtime.py [--pods 10] [--parallel 8]

It starts an isolated Podman service (own storage, network and test-local containers.conf,
like the runtime tests), then for N pods creates the sandbox and one busybox container and
starts it, first one pod at a time, then ``--parallel`` at a time. It prints per-pod
latency (median, max), wall time, the REST calls those starts made (count, median, max per
kind: pod create, pod start, infra inspect, container create, start, list), and a few calls
the kubelet makes often (list, exec).
Everything created is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # before the repo root: "runtimes" must be tests/runtimes here

from kybern.runtime import ContainerSpec  # noqa: E402
from kybern.runtimes.podman.runtime import PodmanRuntime  # noqa: E402
from loguru import logger  # noqa: E402
from runtimes.podman_env import (  # noqa: E402
    BUSYBOX,
    busybox_archive,
    close_runtime,
    open_runtime,
    sandbox_spec,
    write_containers_conf,
)

SLEEPER = ContainerSpec(name="app", image=BUSYBOX, command=["sleep", "3600"])
#: (method, path with ids and names generalised) -> durations of the REST calls made
CALLS: dict[str, list[float]] = {}


def count_calls() -> None:
    """Time every REST call of the runtime (wraps PodmanRuntime._api, for this process only)."""
    original = PodmanRuntime._api

    async def timed(self: PodmanRuntime, method: str, path: str, *args: object, **kwargs: object) -> object:
        began = time.perf_counter()
        try:
            return await original(self, method, path, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            kind = re.sub(r"/(containers|pods)/(?!(?:create|json)$)[^/]+", r"/\1/ID", path)
            CALLS.setdefault(f"{method.upper()} {kind}", []).append(time.perf_counter() - began)

    PodmanRuntime._api = timed  # type: ignore[method-assign]


def report_calls() -> None:
    for key, samples in sorted(CALLS.items()):
        print(f"    {key:<30} n={len(samples):<3} median={statistics.median(samples) * 1000:7.1f}ms"
              f" max={max(samples) * 1000:7.1f}ms")  # fmt: skip
    CALLS.clear()


async def start_pod(runtime: PodmanRuntime, name: str) -> tuple[str, float]:
    began = time.perf_counter()
    spec = sandbox_spec(name)
    sandbox = await runtime.run_pod_sandbox(spec)
    cid = await runtime.create_container(sandbox, SLEEPER)
    await runtime.start_container(cid)
    [status] = await runtime.list_containers(spec.uid)
    if status.state != "running":
        raise RuntimeError(f"{name}: container is {status.state}")
    return spec.uid, time.perf_counter() - began


def report(label: str, latencies: list[float], wall: float) -> None:
    print(
        f"{label:<28} pods={len(latencies):<3} wall={wall:6.2f}s"
        f"  per-pod median={statistics.median(latencies):.3f}s max={max(latencies):.3f}s"
        f"  pods/s={len(latencies) / wall:.1f}"
    )


async def run_batch(runtime: PodmanRuntime, pods: int, parallel: int, tag: str) -> list[str]:
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> tuple[str, float]:
        async with gate:
            return await start_pod(runtime, f"{tag}-{i}")

    began = time.perf_counter()
    CALLS.clear()
    results = await asyncio.gather(*(one(i) for i in range(pods)))
    report(f"create->running x{parallel}", [r[1] for r in results], time.perf_counter() - began)
    report_calls()
    return [r[0] for r in results]


async def timed(label: str, repeat: int, fn) -> None:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - began)
    print(
        f"{label:<28} n={repeat:<3} median={statistics.median(samples) * 1000:7.1f}ms"
        f" max={max(samples) * 1000:7.1f}ms"
    )


async def main(pods: int, parallel: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kybern-bench-") as tmp:
        base = Path(tmp)
        conf = write_containers_conf(base / "containers.conf")
        began = time.perf_counter()
        runtime = await open_runtime(base / "agent", conf, busybox_archive(base), "bench")
        print(f"{'service start + image load':<28} {time.perf_counter() - began:.2f}s")
        try:
            await start_pod(runtime, "warmup")  # builds Podman's pause image once
            seq = await run_batch(runtime, pods, 1, "seq")
            par = await run_batch(runtime, pods, parallel, "par")
            uid = seq[0]
            [ctr] = await runtime.list_containers(uid)
            await timed("list_containers (all)", 10, lambda: runtime.list_containers())
            await timed("list_sandboxes (all)", 10, lambda: runtime.list_sandboxes())
            await timed("exec_sync true", 10, lambda: runtime.exec_sync(ctr.id, ["true"], timeout=10))
            began = time.perf_counter()
            for uid in seq + par:
                await runtime.remove_pod_sandbox(uid)
            print(f"{'remove_pod_sandbox (each)':<28} {(time.perf_counter() - began) / len(seq + par):.3f}s")
        finally:
            await close_runtime(runtime)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    logger.remove()
    count_calls()
    asyncio.run(main(args.pods, args.parallel))
