"""Pod start-up benchmark of the node agent on Podman: create -> Running latency.

Not a test (prints figures, asserts nothing timed). Run it alone, as root with Podman:

    .venv/bin/python tests/benchmarks/bench_pod_startup.py [--pods 50] [--idle-pods 20] [--idle-seconds 30]

It starts a real ``kybern server`` with its node agent on an isolated Podman (like the kubelet
tests), then:
1. times ``podman run --rm`` of the busybox image on the same storage (the floor),
2. creates ``--pods`` pods at once through the API (bound to the node) and reports the time
   from each create to the watch showing it Running (p50, p99, max, wall),
3. keeps ``--idle-pods`` of them running and reads the server process' CPU time from
   /proc/PID/stat over ``--idle-seconds`` (the whole server: API server, store, agent).
Everything created is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # "runtimes", "support" and "kubelet" are the tests' packages here

from kubelet.nodes import BUSYBOX, Cluster, kubelet_cluster  # noqa: E402
from kybern.client import HttpApiClient  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def podman_run_times(cluster: Cluster, n: int = 5) -> list[float]:
    node = cluster.nodes[0]
    times = []
    for _ in range(n):
        started = time.monotonic()
        node.cli("run", "--rm", "--network", "none", BUSYBOX, "true")
        times.append(time.monotonic() - started)
    return times


def pod(name: str, node: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}],
        },
    }


async def create_and_wait(cluster: Cluster, count: int) -> tuple[list[float], float]:
    api = HttpApiClient.from_kubeconfig(cluster.server.kubeconfig)
    sent: dict[str, float] = {}
    running: dict[str, float] = {}
    try:
        listing = await api.list("pods", namespace="default")
        rv = listing["metadata"]["resourceVersion"]
        done = asyncio.Event()

        async def watch() -> None:
            async for event in api.watch("pods", namespace="default", resource_version=rv):
                name = event.object.get("metadata", {}).get("name", "")
                if event.object.get("status", {}).get("phase") == "Running" and name not in running:
                    running[name] = time.monotonic()
                    if len(running) == count:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        wall = time.monotonic()

        async def create(i: int) -> None:
            name = f"bench-{i}"
            sent[name] = time.monotonic()
            await api.create("pods", pod(name, cluster.nodes[0].name), namespace="default")

        await asyncio.gather(*(create(i) for i in range(count)))
        await asyncio.wait_for(done.wait(), 600)
        wall = time.monotonic() - wall
        watcher.cancel()
        return [running[n] - sent[n] for n in sent], wall
    finally:
        await api.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def podman_service_pid(cluster: Cluster) -> int | None:
    """The agent's own ``podman system service`` (its storage root is in the command line)."""
    root = str(cluster.nodes[0].podman.global_args()[1])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if root.encode() in cmd and b"service" in cmd:
                return int(entry.name)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--idle-pods", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=30)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="kybern-bench-pods-") as tmp,
        kubelet_cluster(Path(tmp)) as cluster,
    ):
        floor = podman_run_times(cluster)
        print(f"podman run --rm {BUSYBOX} true: median {statistics.median(floor):.3f}s "
              f"(min {min(floor):.3f}s, n={len(floor)})")  # fmt: skip
        latencies, wall = asyncio.run(create_and_wait(cluster, args.pods))
        print(f"{args.pods} pods created at once -> Running: p50 {pct(latencies, 0.5):.3f}s  "
              f"p99 {pct(latencies, 0.99):.3f}s  max {max(latencies):.3f}s  wall {wall:.3f}s")  # fmt: skip
        extra = [f"bench-{i}" for i in range(args.idle_pods, args.pods)]
        if extra:
            cluster.kubectl("delete", "pod", *extra, "--wait=true", timeout=300)
        time.sleep(5)  # let deletions and status writes settle
        pid = cluster.server.process.pid
        service = podman_service_pid(cluster)
        before, started = cpu_seconds(pid), time.monotonic()
        service_before = cpu_seconds(service) if service else 0.0
        time.sleep(args.idle_seconds)
        used = cpu_seconds(pid) - before
        elapsed = time.monotonic() - started
        print(f"idle server process (API server + store + agent) with {args.idle_pods} running pods: "
              f"{100 * used / elapsed:.2f}% of one core over {elapsed:.0f}s")  # fmt: skip
        if service:
            service_used = cpu_seconds(service) - service_before
            print(
                f"  its podman service meanwhile (answering the relist): {100 * service_used / elapsed:.2f}%"
            )
        cluster.kubectl("delete", "pods", "-l", "bench=startup", "--wait=true", timeout=300)


if __name__ == "__main__":
    main()
