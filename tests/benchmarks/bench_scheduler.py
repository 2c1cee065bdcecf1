"""Scheduler benchmark: throughput and latency at scale, and bin-packing quality.

Run alone: ``.venv/bin/python tests/benchmarks/bench_scheduler.py [--nodes 1000] [--pods 10000]``.
It starts its own ``kybern server --disable-agent`` (SQLite in a temp dir, no kubelet and no
controllers: Node objects are created through the API with status.allocatable and a Ready
condition, as hollow nodes would report them) and prints figures; it asserts nothing.

1. Throughput: NODES nodes (8 cpu, 32Gi, 110 pods), PODS pods (100m, 128Mi) created through the
   API by CONCURRENCY clients; pods/s from the first create to the last bind (seen on a
   watch), and scheduling latency (create request sent -> bound pod seen) p50/p99.
   Goal from the issue: >= 500 pods/s on 2 cores.
2. Bin packing: PACK_NODES fresh nodes (4 cpu, 16Gi) and mixed-size pods created in random
   order for the MostAllocated profile: nodes used, against first-fit-decreasing computed here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from kybern.client import ApiError, HttpApiClient
from kybern.quantity import cpu_millis, memory_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leanhttp import LeanClient
from profiling import profiled_launch
from support.metrics import counter, request_counts

SCHED_CONFIG = """\
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
        resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
"""

#: (cpu, memory) sizes of the bin-packing pods
SIZES = [("250m", "512Mi"), ("500m", "1Gi"), ("1", "2Gi"), ("1500m", "6Gi"), ("2", "4Gi"), ("3", "3Gi")]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: KYBERN_BENCH_SCHEDULER_PROFILE=FILE: the scheduler runs in a `kybern component` process this
#: script starts under cProfile (stats written when it stops)
SCHED_PROFILE = os.environ.get("KYBERN_BENCH_SCHEDULER_PROFILE")


def start_profiled_scheduler(base: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *profiled_launch(SCHED_PROFILE),
            *("--log-level", "WARNING", "component", "scheduler", "--data-dir", str(base / "data")),
            *("--scheduler-config", str(base / "scheduler.yaml")),
        ],
        stdout=open(base / "scheduler.log", "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def start_server(
    base: Path, gc_threshold: str | None = None, scheduler_process: bool = True
) -> tuple[subprocess.Popen[bytes], HttpApiClient]:
    port = free_port()
    data = base / "data"
    config = base / "scheduler.yaml"
    config.write_text(SCHED_CONFIG)
    log = open(base / "server.log", "wb")
    disable = [a for n in ("controller-manager", "kubelet", "proxy", "dns") for a in ("--disable", n)]
    # KYBERN_BENCH_PROFILE=FILE runs the server under cProfile (stats written at exit; timed by
    # its CPU clock with KYBERN_BENCH_PROFILE_CPU=1)
    profile = os.environ.get("KYBERN_BENCH_PROFILE")
    launch = profiled_launch(profile)
    if gc_threshold and not profile:
        # the same CLI with the collector's thresholds set first (an experiment: how much of the
        # server's CPU goes to cyclic GC scans of its large, growing heap)
        boot = (
            f"import gc, sys; gc.set_threshold({gc_threshold}); from kybern.cli import main; sys.exit(main())"
        )
        launch = [sys.executable, "-c", boot]
    if SCHED_PROFILE:
        placement = ["--disable", "scheduler"]  # this script starts it, under cProfile
    else:
        placement = ["--component-process", "scheduler" if scheduler_process else "none"]
    proc = subprocess.Popen(
        [
            *launch,
            "--log-level",
            "WARNING",
            "server",
            "--disable-agent",
            "--data-dir",
            str(data),
            "--https-listen-port",
            str(port),
            "--bind-address",
            "127.0.0.1",
            "--scheduler-config",
            str(config),
            *disable,
            # the scheduler in its own process (the default): the API server's GIL gets a core
            *placement,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (data / "kubeconfig.yaml").exists() and (data / "tls" / "ca.crt").exists():
            token = (data / "token").read_text().strip()
            return proc, HttpApiClient(f"https://127.0.0.1:{port}", token, data / "tls" / "ca.crt")
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start:\n" + (base / "server.log").read_text()[-3000:])


async def wait_ready(client: HttpApiClient) -> None:
    for _ in range(100):
        try:
            await client.list("namespaces")
            return
        except (ApiError, OSError):
            await asyncio.sleep(0.2)


async def bounded(concurrency: int, jobs: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with sem:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def make_node(client: HttpApiClient, name: str, cpu: str, memory: str, labels: dict[str, str]) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
    }
    await client.create("nodes", node)
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    status = {
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "bench"}],
        }
    }
    await client.patch("nodes", name, status, subresource="status")


def pod(name: str, ns: str, cpu: str, memory: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "containers": [
                {"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
            ],
            **spec,
        },
    }


class _Meta(msgspec.Struct):
    name: str = ""
    resourceVersion: str = ""


class _Spec(msgspec.Struct):
    nodeName: str = ""


class _Pod(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: _Spec = msgspec.field(default_factory=_Spec)


class _Event(msgspec.Struct):
    type: str
    object: _Pod


class BindWatcher:
    """Records when each pod of a namespace is first seen bound.

    Its watch is read by a lean client and each event decoded into just the fields it needs
    (msgspec skips the rest without building it): this process' CPU is part of what the
    2-core machine spends per pod, and a full client decoding every event (bound, then
    Running) into dicts cost more than the pod creates."""

    def __init__(self, conn: LeanClient, ns: str, rv: str) -> None:
        self.conn, self.ns, self.rv = conn, ns, rv
        self.bound: dict[str, float] = {}
        self.node_of: dict[str, str] = {}
        self.changed = asyncio.Event()

    async def run(self) -> None:
        decode = msgspec.json.Decoder(_Event).decode
        while True:
            # bound pods only: a pending pod's ADDED event would be decoded here for nothing
            path = (
                f"/api/v1/namespaces/{self.ns}/pods?watch=true&resourceVersion={self.rv}"
                "&fieldSelector=spec.nodeName%21%3D&timeoutSeconds=3600"
            )
            async for line in self.conn.stream(path):
                ev = decode(line)
                if ev.type == "ERROR":
                    raise RuntimeError(f"watch failed: {line[:300]!r}")
                obj = ev.object
                self.rv = obj.metadata.resourceVersion or self.rv
                node, name = obj.spec.nodeName, obj.metadata.name
                if node and name not in self.bound:
                    self.bound[name] = time.monotonic()
                    self.node_of[name] = node
                    self.changed.set()

    async def wait_for(self, count: int, stall: float = 30.0) -> bool:
        """Until ``count`` pods are bound; False if nothing changes for ``stall`` seconds."""
        while len(self.bound) < count:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), stall)
            except TimeoutError:
                return False
        return True


class Load:
    """Where the time goes during a phase: CPU seconds of the server, the hollow-node agent and
    this (client) process, and the API writes per resource from the server's /metrics
    (``apiserver_request_total``), so the figures say which process and which writes bound them."""

    WRITES = ("POST", "PUT", "PATCH", "DELETE")

    def __init__(self, client: HttpApiClient, server: int, agent: int | None) -> None:
        self.client, self.pids = client, {"server": server, **({"agent": agent} if agent else {})}

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _syscalls(pid: int) -> tuple[int, int]:
        """(read, write) syscalls of a process so far: each watch event or response the server
        sends alone costs it a write (and its client a read and a wake-up)."""
        try:
            io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        except (OSError, ValueError):
            return 0, 0
        return int(io.get("syscr", 0)), int(io.get("syscw", 0))

    async def _counts(self) -> tuple[dict[str, float], tuple[float, float]]:
        """API writes per "VERB resource", and the store's (group commits, writes in them)."""
        text = await self._metrics_text()
        writes = {k: v for k, v in request_counts(text).items() if k.split(" ", 1)[0] in self.WRITES}
        commits = (
            counter(text, "kybern_storage_group_commits_total"),
            counter(text, "kybern_storage_group_commit_writes_total"),
        )
        return writes, commits

    async def _metrics_text(self) -> str:
        session = self.client._get_session()  # the client's own TLS session and token
        async with session.get(f"{self.client.url}/metrics", headers=self.client._headers()) as resp:
            return await resp.text()

    def _children(self) -> None:
        """Components the server runs as child processes (``--component-process``) count
        apart: their CPU is not the API server's."""
        server = self.pids["server"]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != server:
                    continue
                argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            words = [a.decode() for a in argv if a]
            name = " ".join(words[words.index("component") + 1 :][:1]) if "component" in words else "child"
            self.pids[f"{name} process"] = int(stat.parent.name)

    async def start(self) -> None:
        self._children()
        self.t0 = time.monotonic()
        self.cpu0 = {name: self._cpu(pid) for name, pid in self.pids.items()}
        self.io0 = self._syscalls(self.pids["server"])
        self.self0 = time.process_time()
        self.writes0, self.commits0 = await self._counts()

    async def report(self) -> dict[str, float]:
        """Prints the figures; returns CPU seconds per process."""
        elapsed = time.monotonic() - self.t0
        cpu = {name: self._cpu(pid) - self.cpu0[name] for name, pid in self.pids.items()}
        cpu["bench client"] = time.process_time() - self.self0
        io = self._syscalls(self.pids["server"])
        self.server_syscalls = (io[0] - self.io0[0], io[1] - self.io0[1])
        writes, commits_now = await self._counts()
        print(
            "CPU during the phase (share of one core): "
            + ", ".join(f"{name} {seconds / elapsed:.0%}" for name, seconds in cpu.items())
            + f"; load average {os.getloadavg()[0]:.1f}"
        )
        delta = {k: v - self.writes0.get(k, 0.0) for k, v in writes.items()}
        top = sorted(((v, k) for k, v in delta.items() if v > 0), reverse=True)
        print(
            f"API writes ({sum(delta.values()) / elapsed:.0f}/s): "
            + ", ".join(f"{k} {v / elapsed:.0f}/s" for v, k in top[:8])
        )
        commits, stored = (b - a for a, b in zip(self.commits0, commits_now, strict=True))
        if commits:
            per = stored / commits
            print(f"store: {stored:.0f} writes in {commits:.0f} group commits ({per:.1f} per commit)")
        return cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_hollow_nodes(base: Path, client: HttpApiClient, nodes: int) -> subprocess.Popen[bytes]:
    """``kybern agent --runtime simulated --nodes N``: hollow nodes with Node objects and
    Leases, whose pods go Running (the kubelet's status writes add to the API load)."""
    data = base / "data"
    log = open(base / "agent.log", "wb")
    token = (data / "node-token").read_text().strip()
    return subprocess.Popen(
        [
            # KYBERN_BENCH_AGENT_PROFILE=FILE: the agent under cProfile (see profiling.py)
            *profiled_launch(os.environ.get("KYBERN_BENCH_AGENT_PROFILE")),
            "--log-level",
            "WARNING",
            "agent",
            "--server",
            client.url,
            "--token",
            token,
            "--server-ca",
            str(data / "tls" / "ca.crt"),
            "--data-dir",
            str(base / "agent"),
            "--runtime",
            "simulated",
            "--nodes",
            str(nodes),
            "--node-name-prefix",
            "hollow-",
            "--cpu",
            "8",
            "--memory",
            "32Gi",
            "--pods",
            "110",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def wait_nodes(client: HttpApiClient, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        ready = sum(1 for n in (await client.list("nodes"))["items"] if _ready(n))
        if ready >= count:
            return
        await asyncio.sleep(1)
    raise SystemExit(f"only {ready} of {count} hollow nodes became Ready")


async def throughput(
    client: HttpApiClient,
    nodes: int,
    pods: int,
    concurrency: int,
    hollow: bool,
    load: Load,
    token: str,
    ca_file: Path,
) -> None:
    t0 = time.monotonic()
    if hollow:
        await wait_nodes(client, nodes)
        print(f"{nodes} hollow nodes Ready in {time.monotonic() - t0:.1f}s")
    else:
        await bounded(
            50, [make_node(client, f"node-{i:05d}", "8", "32Gi", {"pool": "main"}) for i in range(nodes)]
        )
        print(f"{nodes} nodes created in {time.monotonic() - t0:.1f}s")
    await asyncio.sleep(2)  # let the scheduler's node watch catch up
    ns = "bench"
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    # the namespace's default ServiceAccount, which the controller-manager (not run here) makes
    # in a cluster: without it, service account admission looks each pod's account up in the
    # store instead of the watch cache. No token is mounted (as in kube's scheduler_perf pods).
    await client.create(
        "serviceaccounts",
        {"metadata": {"name": "default"}, "automountServiceAccountToken": False},
        namespace=ns,
    )
    rv = (await client.list("pods", namespace=ns, limit=1))["metadata"]["resourceVersion"]
    ctx = ssl.create_default_context(cafile=str(ca_file))
    watcher = BindWatcher(LeanClient.for_url(client.url, ctx, token), ns, rv)
    watch_task = asyncio.create_task(watcher.run())
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    # the creates go through lean keep-alive connections: with aiohttp's client this process
    # spent ~0.7 ms per pod, CPU the 2-core machine then lacks for what is measured
    conns = [LeanClient.for_url(client.url, ctx, token) for _ in range(concurrency)]
    path = f"/api/v1/namespaces/{ns}/pods"
    numbers = iter(range(pods))
    failures: list[str] = []

    # one encoded pod, its name filled in per create
    template = json.dumps(pod("NAME", ns, "100m", "128Mi")).encode().split(b'"NAME"')

    async def creator(conn: LeanClient) -> None:
        for i in numbers:
            name = f"p{i:05d}"
            body = f'"{name}"'.encode().join(template)
            sent[name] = time.monotonic()
            status, reply = await conn.request("POST", path, body)
            answered[name] = time.monotonic()
            if status != 201:
                failures.append(f"{name}: {status} {reply[:200]!r}")

    for conn in conns:  # connect and handshake before the clock starts
        await conn.request("GET", "/version")
    await load.start()
    start = time.monotonic()
    await asyncio.gather(*(creator(conn) for conn in conns))
    created = time.monotonic()
    for conn in conns:
        await conn.close()
    if failures:
        print(f"{len(failures)} creates failed, first: {failures[0]}")
        pods -= len(failures)
    complete = await watcher.wait_for(pods)
    end = max(watcher.bound.values(), default=created)
    watch_task.cancel()
    cpu = await load.report()
    latencies = [watcher.bound[n] - sent[n] for n in watcher.bound]
    print(f"pods created: {pods} in {created - start:.1f}s ({pods / (created - start):.0f} creates/s)")
    print(
        f"pods bound:   {len(watcher.bound)}{'' if complete else ' (STALLED)'} in {end - start:.1f}s "
        f"from first create -> {len(watcher.bound) / (end - start):.0f} pods/s"
    )
    if watcher.bound and cpu["server"] > 0:
        # comparable across runs on a shared machine, where the server gets a varying share of a core
        per_pod = cpu["server"] / len(watcher.bound)
        print(
            f"server CPU per bound pod: {per_pod * 1000:.2f} ms "
            f"(-> {1 / per_pod:.0f} pods/s if the server had one core to itself)"
        )
        reads, writes = load.server_syscalls
        print(
            f"server syscalls per bound pod: {writes / len(watcher.bound):.1f} writes, "
            f"{reads / len(watcher.bound):.1f} reads"
        )
    if watcher.bound:
        # every process of the benchmark shares the machine's cores: the sum bounds throughput too
        total = sum(cpu.values()) / len(watcher.bound)
        cores = os.cpu_count() or 1
        print(
            f"all processes' CPU per bound pod: {total * 1000:.2f} ms "
            f"(-> {cores / total:.0f} pods/s if {cores} cores were shared perfectly)"
        )
        if total > 0 and cpu["server"] > 0:
            # a shared VM slows every process at once, by up to 15% from one run to the next:
            # the server's share of the work varies far less than its CPU per pod
            print(f"server's share of all processes' CPU: {cpu['server'] / sum(cpu.values()) * 100:.1f}%")
    if latencies:
        print(
            "scheduling latency (create sent -> bound seen): "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )
        # where that time goes: the create's own round trip, then scheduling and binding
        creating = [answered[n] - sent[n] for n in watcher.bound if n in answered]
        binding = [watcher.bound[n] - answered[n] for n in watcher.bound if n in answered]
        print(
            f"  of which create sent -> answered p50 {statistics.median(creating) * 1000:.0f} ms, "
            f"answered -> bound seen p50 {statistics.median(binding) * 1000:.0f} ms"
        )
    per_node: dict[str, int] = {}
    for node in watcher.node_of.values():
        per_node[node] = per_node.get(node, 0) + 1
    if per_node:
        print(
            f"pods per node: min {min(per_node.values())}, max {max(per_node.values())}, "
            f"nodes used {len(per_node)}"
        )


async def api_ceiling(client: HttpApiClient, count: int, concurrency: int, node: str) -> None:
    """The API server alone: pods for a scheduler nobody runs, created and then bound
    straight through pods/binding by this client. Two writes of the three the scheduler path
    makes per pod (create, binding, Scheduled event), with no scheduler in the way."""
    ns = "ceiling"
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    start = time.monotonic()
    await bounded(
        concurrency,
        [
            client.create("pods", pod(f"c{i:05d}", ns, "1m", "1Mi", schedulerName="nobody"), namespace=ns)
            for i in range(count)
        ],
    )
    created = time.monotonic()

    def binding(i: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": f"c{i:05d}", "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }

    await bounded(
        concurrency,
        [
            client.create("pods", binding(i), namespace=ns, name=f"c{i:05d}", subresource="binding")
            for i in range(count)
        ],
    )
    bound = time.monotonic()
    print(
        f"API server alone: {count / (created - start):.0f} pod creates/s, "
        f"{count / (bound - created):.0f} bindings/s (concurrency {concurrency})"
    )


def decisions_only(nodes: int, pods: int) -> None:
    """The scheduling cycle alone, in this process: the default profile's real plugins (loaded
    from their entry points) over in-memory NodeInfos, each pod assumed on its node. This is
    the ceiling the scheduler would reach if the API server cost nothing."""
    from kybern.pluginmanager import load_plugins
    from kybern.plugins.scheduler.config import discover_plugins, parse_config
    from kybern.plugins.scheduler.framework import Profile
    from kybern.scheduling import NodeInfo, PodInfo

    pm = load_plugins().manager
    available = discover_plugins(pm)
    profile = Profile(parse_config(None, available).profiles[0], pm, available)
    infos = [
        NodeInfo.from_obj(
            {
                "metadata": {"name": f"n{i}", "labels": {"kubernetes.io/hostname": f"n{i}"}},
                "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
            }
        )
        for i in range(nodes)
    ]
    by_name = {n.name: n for n in infos}
    batch = [
        PodInfo.from_obj(
            {
                "metadata": {"name": f"p{i}", "namespace": "b", "uid": f"u{i}"},
                "spec": pod("x", "b", "100m", "128Mi")["spec"],
            }
        )
        for i in range(pods)
    ]
    # the counts the scheduler's cache keeps, which let plugins skip whole-cluster scans
    tainted = sum(bool(n.taints) for n in infos)
    unschedulable = sum(bool(n.unschedulable) for n in infos)
    start = time.perf_counter()
    for p in batch:
        state = profile.new_state(infos, None)
        state.anti_affinity_pods = 0  # none of these pods has required anti-affinity
        state.tainted_nodes, state.unschedulable_nodes = tainted, unschedulable
        chosen = profile.schedule(state, p, infos, None)
        assert isinstance(chosen, str)
        p.node_name = chosen
        by_name[chosen].add_pod(p)
    elapsed = time.perf_counter() - start
    print(
        f"scheduling cycle alone ({nodes} nodes, default profile, in-process): {pods / elapsed:.0f} pods/s "
        f"({elapsed / pods * 1e6:.0f} us per pod)"
    )


def first_fit_decreasing(items: list[tuple[int, int]], cpu: int, memory: int) -> int:
    """Bins (nodes) FFD needs, items sorted by their larger share of a node."""
    bins: list[list[int]] = []
    for c, m in sorted(items, key=lambda it: max(it[0] / cpu, it[1] / memory), reverse=True):
        for b in bins:
            if b[0] + c <= cpu and b[1] + m <= memory:
                b[0] += c
                b[1] += m
                break
        else:
            bins.append([c, m])
    return len(bins)


async def packing(client: HttpApiClient, watch_conn: LeanClient, nodes: int, pods: int) -> None:
    await bounded(
        20, [make_node(client, f"pack-{i:03d}", "4", "16Gi", {"pool": "pack"}) for i in range(nodes)]
    )
    await asyncio.sleep(1)
    ns = "pack"
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    rv = (await client.list("pods", namespace=ns, limit=1))["metadata"]["resourceVersion"]
    watcher = BindWatcher(watch_conn, ns, rv)
    task = asyncio.create_task(watcher.run())
    rng = random.Random(7)
    sizes = [rng.choice(SIZES) for _ in range(pods)]
    await bounded(
        20,
        [
            client.create(
                "pods",
                pod(f"m{i:04d}", ns, c, m, schedulerName="bin-packing", nodeSelector={"pool": "pack"}),
                namespace=ns,
            )
            for i, (c, m) in enumerate(sizes)
        ],
    )
    await watcher.wait_for(pods, stall=10)
    task.cancel()
    used = len(set(watcher.node_of.values()))
    ffd = first_fit_decreasing([(cpu_millis(c), memory_bytes(m)) for c, m in sizes], 4000, 16 * 2**30)
    print(
        f"bin packing (MostAllocated, {pods} mixed pods in random order, {len(watcher.bound)} bound): "
        f"{used} nodes used; first-fit-decreasing needs {ffd} (ratio {used / ffd:.2f})"
    )


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="kybern-bench-sched-"))
    proc, client = start_server(base, args.gc_threshold, not args.in_process_scheduler)
    agent: subprocess.Popen[bytes] | None = None
    scheduler: subprocess.Popen[bytes] | None = None
    try:
        decisions_only(args.nodes, min(args.pods, 5000))
        await wait_ready(client)
        if SCHED_PROFILE:
            scheduler = start_profiled_scheduler(base)
        if args.hollow:
            agent = start_hollow_nodes(base, client, args.nodes)
        load = Load(client, proc.pid, agent.pid if agent is not None else None)
        if scheduler is not None:
            load.pids["scheduler process"] = scheduler.pid
        data = base / "data"
        await throughput(
            client,
            args.nodes,
            args.pods,
            args.concurrency,
            args.hollow,
            load,
            (data / "token").read_text().strip(),
            data / "tls" / "ca.crt",
        )
        if args.pack_pods:
            ctx = ssl.create_default_context(cafile=str(data / "tls" / "ca.crt"))
            conn = LeanClient.for_url(client.url, ctx, (data / "token").read_text().strip())
            await packing(client, conn, args.pack_nodes, args.pack_pods)
        if args.ceiling:
            node = "node-00000" if not args.hollow else "hollow-0"
            await api_ceiling(client, args.ceiling, args.concurrency, node)
    finally:
        await client.close()
        for process in (scheduler, agent, proc):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (scheduler, agent):
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if args.keep:
            print(f"server data and log kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50, help="pod creates in flight")
    parser.add_argument("--pack-nodes", type=int, default=60)
    parser.add_argument("--pack-pods", type=int, default=150)
    parser.add_argument(
        "--hollow",
        action="store_true",
        help="hollow nodes from `kybern agent --runtime simulated` instead of Node objects",
    )
    parser.add_argument(
        "--ceiling", type=int, default=1000, help="pods for the API-server-alone figure (0: skip)"
    )
    parser.add_argument(
        "--in-process-scheduler",
        action="store_true",
        help="run the scheduler inside the API server's process (--component-process none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the server's data dir and log")
    parser.add_argument(
        "--gc-threshold",
        metavar="G0,G1,G2",
        help="run the server with gc.set_threshold(G0, G1, G2), e.g. 50000,50,100 (experiment)",
    )
    # uvloop, as kybern's processes use: the load generator's CPU counts in the 2-core total
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
