"""Pod start-up benchmark of the node agent on Podman: create -> Running latency.

Not a test (prints figures, asserts nothing timed). Run it alone, as root with Podman:

    .venv/bin/python tests/benchmarks/bench_pod_startup.py [--pods 50] [--idle-pods 20] [--idle-seconds 30]

It starts a real ``kybern server`` with its node agent on an isolated Podman (like the kubelet
tests), then:
1. times ``podman run --rm`` of the busybox image on the same storage, and the Podman
   baseline for the same work: ``--pods`` times ``podman run -d`` of the sleeping busybox
   container on the node's pod network, one after another and all at once (each latency
   counted from the common start, like the pods'),
2. creates one pod alone, then ``--pods`` pods at once through the API (bound to the node),
   and reports the time from each create to the watch showing it Running (p50, p99, max,
   wall), with the per-step breakdown the agent logs for each pod ("Observed pod startup
   duration": API -> agent, waiting for a start slot, sandbox = Podman pod create + start +
   infra inspect, container create and start, status write, status -> client's watch),
3. keeps ``--idle-pods`` of them running and reads the server process' CPU time from
   /proc/PID/stat over ``--idle-seconds`` (the whole server: API server, store, agent).
Everything created is removed at the end, also on failure.

``KYBERN_KUBELET_START_SLOTS=N`` in the environment sets how many pods the agent starts at
once (its default is NodeAgent's START_SLOTS).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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


def pod_network(cluster: Cluster) -> str:
    names = cluster.nodes[0].cli("network", "ls", "--format", "{{.Name}}").split()
    return next((n for n in names if n.startswith("kybern-")), "podman")


async def podman_run_d(cluster: Cluster, name: str, network: str, pod: bool = False) -> None:
    """``podman run -d`` of the pods' container; with ``pod`` in a new Podman pod of its own
    (``--pod new:``: infra container on the network, then the container, like an agent's pod)."""
    node = cluster.nodes[0]
    where = ["--pod", f"new:{name}-pod"] if pod else ["--name", name]
    process = await asyncio.create_subprocess_exec(
        "podman", *node.podman.global_args(), "run", "-d", *where, "--network", network,
        BUSYBOX, "sleep", "3600",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CONTAINERS_CONF": str(node.conf)},
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"podman run {name}: {err.decode(errors='replace').strip()}")


async def podman_baseline(cluster: Cluster, count: int) -> None:
    """``podman run -d`` of the same image and command as the pods: one container each (a pod
    is two: the infra container holding the network namespace, and the app), then the same
    in a Podman pod each."""
    network = pod_network(cluster)
    names: list[str] = []
    pods: list[str] = []
    try:
        seq: list[float] = []
        began = time.monotonic()
        for i in range(count):
            names.append(f"baseline-seq-{i}")
            started = time.monotonic()
            await podman_run_d(cluster, names[-1], network)
            seq.append(time.monotonic() - started)
        wall = time.monotonic() - began
        print(f"podman run -d x{count} one after another: each p50 {pct(seq, 0.5):.3f}s p99 "
              f"{pct(seq, 0.99):.3f}s  wall {wall:.2f}s ({count / wall:.1f}/s)")  # fmt: skip
        began = time.monotonic()
        done: list[float] = []

        async def one(name: str) -> None:
            await podman_run_d(cluster, name, network)
            done.append(time.monotonic() - began)

        batch = [f"baseline-par-{i}" for i in range(count)]
        names += batch
        await asyncio.gather(*(one(n) for n in batch))
        print(f"podman run -d x{count} all at once:       p50 {pct(done, 0.5):.3f}s p99 "
              f"{pct(done, 0.99):.3f}s  wall {max(done):.2f}s ({count / max(done):.1f}/s)")  # fmt: skip
        cluster.nodes[0].cli("rm", "-f", "-t", "0", *names, check=False)
        names = []
        began = time.monotonic()
        done.clear()

        async def in_pod(name: str) -> None:
            await podman_run_d(cluster, name, network, pod=True)
            done.append(time.monotonic() - began)

        pods = [f"baseline-pod-{i}" for i in range(count)]
        await asyncio.gather(*(in_pod(n) for n in pods))
        print(f"podman run -d --pod new: x{count} at once: p50 {pct(done, 0.5):.3f}s p99 "
              f"{pct(done, 0.99):.3f}s  wall {max(done):.2f}s ({count / max(done):.1f}/s)")  # fmt: skip
    finally:
        if names:
            cluster.nodes[0].cli("rm", "-f", "-t", "0", *names, check=False)
        if pods:
            cluster.nodes[0].cli("pod", "rm", "-f", "-t", "0", *(f"{n}-pod" for n in pods), check=False)


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


async def create_and_wait(
    cluster: Cluster, count: int, prefix: str = "bench"
) -> tuple[dict[str, float], dict[str, float], float]:
    """Wall-clock (time.time) create and Running times per pod name, and the wall time."""
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
                    running[name] = time.time()
                    if len(running) == count:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        wall = time.monotonic()

        async def create(i: int) -> None:
            name = f"{prefix}-{i}"
            sent[name] = time.time()
            await api.create("pods", pod(name, cluster.nodes[0].name), namespace="default")

        await asyncio.gather(*(create(i) for i in range(count)))
        await asyncio.wait_for(done.wait(), 600)
        wall = time.monotonic() - wall
        watcher.cancel()
        return sent, running, wall
    finally:
        await api.close()


TRACE = re.compile(r"Observed pod startup duration pod=([^/ ]+)/(\S+) (.*)")


def traces(cluster: Cluster) -> dict[str, dict[str, float]]:
    """The agent's per-pod step times (see PodWorker's StartupTrace) from the server log."""
    found: dict[str, dict[str, float]] = {}
    for match in TRACE.finditer(cluster.server.log_path.read_text(errors="replace")):
        found[match.group(2)] = {
            k: float(v) for k, _, v in (item.partition("=") for item in match.group(3).split())
        }
    return found


def report(
    cluster: Cluster, label: str, sent: dict[str, float], running: dict[str, float], wall: float
) -> None:
    latencies = [running[n] - sent[n] for n in sent]
    print(f"{label}: p50 {pct(latencies, 0.5):.3f}s  p99 {pct(latencies, 0.99):.3f}s  "
          f"max {max(latencies):.3f}s  wall {wall:.3f}s ({len(sent) / wall:.1f} pods/s)")  # fmt: skip
    steps: dict[str, list[float]] = {}
    time.sleep(0.5)  # the agent logs a pod's trace just after the status write the watch saw
    found = traces(cluster)
    for name in sent:
        trace = found.get(name)
        if trace is None:
            continue
        steps.setdefault("api->agent", []).append(trace["seen"] - sent[name])
        for key, value in trace.items():
            if key not in ("seen", "total"):
                steps.setdefault(key, []).append(value)
        steps.setdefault("status->client", []).append(running[name] - trace["seen"] - trace["total"])
    if steps:
        print(f"  per step over {len(steps['api->agent'])} pods (p50 / p99 / mean, seconds):")
        for key, values in steps.items():
            values += [0.0] * (len(steps["api->agent"]) - len(values))
            p50, p99, mean = pct(values, 0.5), pct(values, 0.99), statistics.fmean(values)
            print(f"    {key:<15} {p50:7.3f} {p99:7.3f} {mean:7.3f}")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime (and with ``children`` those of its waited-for children: the service's
    runc and netavark runs; conmon daemonizes, so its own work is not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time the whole machine was busy (all processes, everyone's)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


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


def idle(cluster: Cluster, pods: int, seconds: float) -> None:
    """CPU of the server process and of its Podman service while nothing happens."""
    pid = cluster.server.process.pid
    service = podman_service_pid(cluster)
    before, started = cpu_seconds(pid), time.monotonic()
    service_before = cpu_seconds(service, True) if service else 0.0
    time.sleep(seconds)
    used = cpu_seconds(pid) - before
    elapsed = time.monotonic() - started
    print(f"idle server process (API server + store + agent) with {pods} running pods: "
          f"{100 * used / elapsed:.2f}% of one core over {elapsed:.0f}s")  # fmt: skip
    if service:
        service_used = cpu_seconds(service, True) - service_before
        print(f"  its podman service meanwhile (relist, status checks): {100 * service_used / elapsed:.2f}%")


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
        print(f"load average at start: {os.getloadavg()[0]:.2f}; start slots: "
              f"{os.environ.get('KYBERN_KUBELET_START_SLOTS') or 'default'}")  # fmt: skip
        floor = podman_run_times(cluster)
        print(f"podman run --rm {BUSYBOX} true: median {statistics.median(floor):.3f}s "
              f"(min {min(floor):.3f}s, n={len(floor)})")  # fmt: skip
        asyncio.run(podman_baseline(cluster, args.pods))
        time.sleep(3)
        idle(cluster, 0, args.idle_seconds)
        sent, running, wall = asyncio.run(create_and_wait(cluster, 1, prefix="single"))
        report(cluster, "1 pod alone -> Running", sent, running, wall)
        service = podman_service_pid(cluster)
        cpu = (
            cpu_seconds(cluster.server.process.pid),
            cpu_seconds(service or os.getpid(), True),
            busy_seconds(),
        )
        sent, running, wall = asyncio.run(create_and_wait(cluster, args.pods))
        report(cluster, f"{args.pods} pods created at once -> Running", sent, running, wall)
        used = (
            cpu_seconds(cluster.server.process.pid) - cpu[0],
            cpu_seconds(service or os.getpid(), True) - cpu[1],
        )
        machine = busy_seconds() - cpu[2]
        print(f"  CPU meanwhile: server process {used[0]:.2f}s, podman service with its children "
              f"{used[1]:.2f}s, whole machine {machine:.2f}s of {2 * wall:.2f}s (2 cores)")  # fmt: skip
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        extra = [f"bench-{i}" for i in range(args.idle_pods, args.pods)] + ["single-0"]
        if extra:
            cluster.kubectl("delete", "pod", *extra, "--wait=true", timeout=300)
        time.sleep(5)  # let deletions and status writes settle
        idle(cluster, args.idle_pods, args.idle_seconds)
        cluster.kubectl("delete", "pods", "-l", "bench=startup", "--wait=true", timeout=300)


if __name__ == "__main__":
    main()
