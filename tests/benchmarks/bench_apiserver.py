"""API server benchmark: create throughput, GET/LIST latency, watch delivery latency.

Run alone: ``.venv/bin/python tests/benchmarks/bench_apiserver.py [--creates-only | --writes-only]``
(``--writes-only``: just the per-request server CPU of the scheduler benchmark's writes, twice;
``KYBERN_BENCH_WRITES=N`` requests of each kind, ``KYBERN_BENCH_PROFILE=FILE`` runs the server
under cProfile, timed by its main thread's CPU clock when ``KYBERN_BENCH_PROFILE_CPU=1``).
It starts its own ``kybern server --disable-agent`` on SQLite in a temp dir.
Prints figures, asserts nothing.
Goals from the issue: >= 1000 creates/s, single-object p99 <= 50 ms, watch p99 <= 50 ms.

Creates are measured over HTTPS with the admin token from two clients: aiohttp (a full
client, whose own CPU per request is about the server's, so with one client the figure is
bounded by both processes taking turns) and a lean keep-alive HTTP/1.1 client on asyncio
streams (closer to what client-go costs). Each create line also prints the server process'
CPU time per create (from /proc), which stays comparable when the shared machine is loaded.
The last figures compare kybern's ApiClient over TCP + TLS with the client ``api_factory``
gives in-process components (over the API server's local Unix socket, no TLS).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leanhttp import LeanClient
from profiling import profiled_launch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: Path) -> tuple[subprocess.Popen[bytes], str, str, ssl.SSLContext]:
    port = free_port()
    data = base / "data"
    log = open(base / "server.log", "wb")
    launch = profiled_launch(os.environ.get("KYBERN_BENCH_PROFILE"))
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
            *[
                a
                for n in ("scheduler", "controller-manager", "kubelet", "proxy", "dns")
                for a in ("--disable", n)
            ],
            "--bind-address",
            "127.0.0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (data / "kubeconfig.yaml").exists():
            ctx = ssl.create_default_context(cafile=str(data / "tls" / "ca.crt"))
            try:
                import urllib.request

                with urllib.request.urlopen(url + "/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return proc, url, (data / "token").read_text().strip(), ctx
            except OSError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start:\n" + (base / "server.log").read_text()[-3000:])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def lean_creates(
    url: str, ctx: ssl.SSLContext, token: str, ns: str, clients: int, total: int
) -> tuple[float, list[float]]:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    conns = [LeanClient(host, int(port), ctx, token) for _ in range(clients)]
    path = f"/api/v1/namespaces/{ns}/configmaps"
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(c: LeanClient) -> None:
        for i in counter:
            t0 = time.perf_counter()
            status, body = await c.request("POST", path, cm(f"l{i}"))
            if status != 201:
                print("create failed", status, body[:200])
            latencies.append(time.perf_counter() - t0)

    for c in conns:  # connect (and handshake) before the clock starts
        await c.request("GET", "/version")
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    rate = total / (time.perf_counter() - t0)
    for c in conns:
        await c.close()
    return rate, latencies


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def cm(name: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"key": "value", "n": name},
        }
    ).encode()


async def make_ns(session: aiohttp.ClientSession, url: str) -> str:
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    async with session.post(f"{url}/api/v1/namespaces", data=body) as r:
        assert r.status == 201, await r.text()
    return ns


async def creates(
    session: aiohttp.ClientSession, url: str, clients: int, total: int
) -> tuple[float, list[float]]:
    ns = await make_ns(session, url)
    path = f"{url}/api/v1/namespaces/{ns}/configmaps"
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            async with session.post(path, data=cm(f"c{i}")) as r:
                await r.read()
                if r.status != 201:
                    print("create failed", r.status)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return total / (time.perf_counter() - t0), latencies


async def reads(session: aiohttp.ClientSession, url: str, n: int) -> tuple[list[float], list[float]]:
    ns = await make_ns(session, url)
    path = f"{url}/api/v1/namespaces/{ns}/configmaps"
    for i in range(100):
        async with session.post(path, data=cm(f"r{i}")) as r:
            await r.read()
    gets, lists = [], []
    for i in range(n):
        t0 = time.perf_counter()
        async with session.get(f"{path}/r{i % 100}") as r:
            await r.read()
        gets.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        async with session.get(path) as r:
            await r.read()
        lists.append(time.perf_counter() - t0)
    return gets, lists


async def watch_latency(session: aiohttp.ClientSession, url: str, watchers: int, events: int) -> list[float]:
    ns = await make_ns(session, url)
    path = f"{url}/api/v1/namespaces/{ns}/configmaps"
    async with session.get(path) as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = 0
    done = asyncio.Event()
    received = 0

    async def watcher() -> None:
        nonlocal ready, received
        async with session.get(
            path, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "120"}
        ) as r:
            ready += 1
            buf = b""
            seen = 0
            async for chunk in r.content.iter_any():
                now = time.perf_counter()
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    ev = json.loads(line)
                    name = ev["object"]["metadata"]["name"]
                    latencies.append(now - sent[name])
                    seen += 1
                    received += 1
                if seen >= events:
                    break
        if received >= watchers * events:
            done.set()

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    while ready < watchers:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    for i in range(events):
        name = f"w{i}"
        sent[name] = time.perf_counter()
        async with session.post(path, data=cm(name)) as r:
            await r.read()
        await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(done.wait(), 60)
    except TimeoutError:
        print(f"  (only {received} of {watchers * events} events arrived)")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


async def client_creates(client: Any, clients: int, total: int) -> float:
    """Creates/s through a kybern ApiClient (what in-process components use)."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await client.create("configmaps", json.loads(cm(f"k{i}")), namespace=ns)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return total / (time.perf_counter() - t0)


async def local_path(base: Path, url: str, token: str) -> None:
    """The in-process components' way in: api_factory's client (over the API server's Unix
    socket when it publishes one) against a plain HttpApiClient over TCP + TLS."""
    from kybern.client import HttpApiClient
    from kybern.components import RunContext
    from kybern.config import Config
    from kybern.runner import api_factory

    data = base / "data"
    sock = data / "apiserver.sock"
    ctx = RunContext(config=Config(data_dir=data), plugins=None)  # type: ignore[arg-type]
    ctx.shared.update(api_url=url, admin_token=token, ca_file=str(data / "tls" / "ca.crt"))
    if sock.exists():
        ctx.shared["api_socket"] = str(sock)
    tcp = HttpApiClient(url, token, data / "tls" / "ca.crt")
    local = api_factory(ctx)()
    try:
        for clients, total in ((1, 1000), (16, 3000)):
            rate_tcp = await client_creates(tcp, clients, total)
            rate_local = await client_creates(local, clients, total)
            print(
                f"ApiClient create, {clients:>2} client(s): TCP+TLS {rate_tcp:6.0f}/s   "
                f"api_factory ({'unix socket' if sock.exists() else 'TCP+TLS'}) {rate_local:6.0f}/s"
            )
    finally:
        await tcp.close()
        await local.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def bench_pod(name: str, ns: str) -> bytes:
    """What bench_scheduler.py creates."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "pause",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    }
                ]
            },
        }
    ).encode()


def binding(name: str, ns: str, uid: str, node: str) -> bytes:
    """What the scheduler's DefaultBinder posts to pods/NAME/binding."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
    ).encode()


def status_patch(pod: dict[str, Any], i: int) -> bytes:
    """The kubelet's status write for a started pod (podworker._write_status, a merge patch of
    ``{"status": ...}`` built by podstatus.build_status): keys of the old status it drops are
    set to null, the rest is the whole new status."""
    now = _now()
    old = pod.get("status") or {}
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    conds = []
    for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"):
        prev = old_conds.get(t)
        c = {"type": t, "status": "True", "lastTransitionTime": (prev or {}).get("lastTransitionTime") or now}
        if prev is not None and prev.get("lastProbeTime") is not None:
            c["lastProbeTime"] = prev["lastProbeTime"]
        conds.append(c)
    ip = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": conds,
        "hostIP": "172.16.0.1",
        "hostIPs": [{"ip": "172.16.0.1"}],
        "startTime": now,
        "qosClass": old.get("qosClass") or "Burstable",
        "containerStatuses": [
            {
                "name": "c",
                "image": "pause",
                "imageID": "simulated://pause@sha256:0000",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": now}},
                "lastState": {},
                "containerID": f"simulated://{uuid.uuid4().hex}",
            }
        ],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
    }
    patch: dict[str, Any] = {k: None for k in old if k not in status and k != "nominatedNodeName"}
    patch.update(status)
    return json.dumps({"status": patch}).encode()


def kubelet_event(pod: dict[str, Any], i: int) -> bytes:
    """What the kubelet's EventRecorder posts (plugins/kubelet/events.py)."""
    meta = pod["metadata"]
    stamp = _now()
    ref = {
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "resourceVersion": meta["resourceVersion"],
        "fieldPath": "spec.containers{c}",
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": ref,
            "reason": "Started",
            "message": "Started container c",
            "type": "Normal",
            "source": {"component": "kubelet", "host": f"node-{i % 100}"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": f"node-{i % 100}",
        }
    ).encode()


async def scheduler_writes(url: str, ctx: ssl.SSLContext, token: str, pid: int, n: int, clients: int) -> None:
    """Server CPU per request for the writes the scheduler benchmark is made of (issue #5):
    POST pods, POST pods/binding, PATCH pods/status (merge patch), PUT leases, POST events,
    each kind sent as its real client sends it, measured from the server's /proc CPU time."""
    host, port = url.removeprefix("https://").rsplit(":", 1)

    def conns(agent: str) -> list[LeanClient]:
        return [LeanClient(host, int(port), ctx, token, agent) for _ in range(clients)]

    admin = LeanClient(host, int(port), ctx, token)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    await admin.request("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": ns}}).encode())
    await admin.request(
        "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": "kube-node-lease"}}).encode()
    )
    pods: dict[str, dict[str, Any]] = {}
    leases: dict[str, dict[str, Any]] = {}
    n_leases = min(200, n)

    async def phase(label: str, agent: str, items: list[Any], send: Any) -> None:
        cs = conns(agent)
        for c in cs:
            await c.request("GET", "/version")
        it = iter(items)
        failures = 0

        async def worker(c: LeanClient) -> None:
            nonlocal failures
            for item in it:
                if not await send(c, item):
                    failures += 1

        (user0, sys0), t0 = cpu_split(pid), time.perf_counter()
        await asyncio.gather(*(worker(c) for c in cs))
        wall = time.perf_counter() - t0
        user1, sys1 = cpu_split(pid)
        us = (user1 - user0 + sys1 - sys0) * 1e6 / len(items)
        sys_us = (sys1 - sys0) * 1e6 / len(items)
        for c in cs:
            await c.close()
        print(
            f"  {label:<22} {us:7.0f} us server CPU/request ({sys_us:4.0f} system)   "
            f"{len(items) / wall:6.0f} req/s" + (f"   ({failures} FAILED)" if failures else "")
        )

    async def create_pod(c: LeanClient, i: int) -> bool:
        status, body = await c.request("POST", f"/api/v1/namespaces/{ns}/pods", bench_pod(f"p{i}", ns))
        if status == 201:
            pods[f"p{i}"] = json.loads(body)
        return status == 201

    async def get_pod(c: LeanClient, i: int) -> bool:
        # served from the watch cache: what any request costs the server before its own work
        status, _ = await c.request("GET", f"/api/v1/namespaces/{ns}/pods/p{i}?resourceVersion=0")
        return status == 200

    async def bind(c: LeanClient, i: int) -> bool:
        p = pods[f"p{i}"]
        body = binding(f"p{i}", ns, p["metadata"]["uid"], f"node-{i % 100}")
        status, _ = await c.request("POST", f"/api/v1/namespaces/{ns}/pods/p{i}/binding", body)
        return status == 201

    async def patch_status(c: LeanClient, i: int) -> bool:
        path = f"/api/v1/namespaces/{ns}/pods/p{i}/status"
        status, body = await c.request(
            "PATCH", path, status_patch(pods[f"p{i}"], i), "application/merge-patch+json"
        )
        if status == 200:
            pods[f"p{i}"] = json.loads(body)
        return status == 200

    lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"

    async def create_lease(c: LeanClient, i: int) -> bool:
        name = f"bench-node-{ns}-{i}"
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro_now()}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}
        body["metadata"] = {"name": name, "namespace": "kube-node-lease"}
        status, data = await c.request("POST", lease_path, json.dumps(body).encode())
        if status == 201:
            leases[name] = json.loads(data)
        return status == 201

    async def renew_lease(c: LeanClient, i: int) -> bool:
        name = f"bench-node-{ns}-{i % n_leases}"
        lease = leases[name]
        lease["spec"]["renewTime"] = _micro_now()
        lease["spec"]["holderIdentity"] = name
        status, data = await c.request("PUT", f"{lease_path}/{name}", json.dumps(lease).encode())
        if status == 200:
            leases[name] = json.loads(data)
        return status == 200

    async def post_event(c: LeanClient, i: int) -> bool:
        status, _ = await c.request(
            "POST", f"/api/v1/namespaces/{ns}/events", kubelet_event(pods[f"p{i}"], i)
        )
        return status == 201

    # the pod watchers of the scheduler benchmark: the scheduler's (all pods), the hollow
    # agent's (bound pods: a field selector, so each event is looked into) and the bench's own
    received = [0, 0, 0]
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )

    async def watch(i: int, path: str, params: dict[str, str]) -> None:
        params = {"watch": "true", "timeoutSeconds": "3600", **params}
        async with session.get(url + path, params=params) as r:
            async for line in r.content:
                if line.strip():
                    received[i] += 1

    watches = [
        asyncio.create_task(watch(0, "/api/v1/pods", {})),
        asyncio.create_task(watch(1, "/api/v1/pods", {"fieldSelector": "spec.nodeName!="})),
        asyncio.create_task(watch(2, f"/api/v1/namespaces/{ns}/pods", {})),
    ]
    idle0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(3)
    idle = (cpu_seconds(pid) - idle0) / (time.perf_counter() - t0)
    print(
        f"scheduler benchmark writes ({n} each, {clients} clients, 3 pod watchers; "
        f"server idle {idle * 100:.1f}% of a core):"
    )
    await phase("POST pods", "bench", list(range(n)), create_pod)
    await phase("GET pod (cache; floor)", "bench", list(range(n)), get_pod)
    await phase("POST pods/binding", "kybern-scheduler", list(range(n)), bind)
    await phase("PATCH pods/status", "kybern-kubelet", list(range(n)), patch_status)
    await phase("  (2nd, same fields)", "kybern-kubelet", list(range(n)), patch_status)
    for i in range(n_leases):
        await create_lease(admin, i)
    await phase("PUT leases", "kybern-kubelet", list(range(n)), renew_lease)
    await phase("POST events", "kybern-kubelet", list(range(n)), post_event)
    await admin.close()
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    await session.close()
    print(f"  (pod watch events received: {received[0]} all, {received[1]} bound, {received[2]} namespace)")


def ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="kybern-bench-"))
    load0 = os.getloadavg()[0]
    proc, url, token, ctx = start_server(base)
    try:
        conn = aiohttp.TCPConnector(ssl=ctx, limit=200)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
            await creates(session, url, 4, 200)  # warm up: connections, code paths, caches
            if "--writes-only" in sys.argv:
                n = int(os.environ.get("KYBERN_BENCH_WRITES", "2000"))
                print(f"(server pid {proc.pid})", flush=True)
                await scheduler_writes(url, ctx, token, proc.pid, n, 8)
                await scheduler_writes(url, ctx, token, proc.pid, n, 8)
                print(f"(load {os.getloadavg()[0]:.1f} at the end ({load0:.1f} at the start))")
                return
            for clients, total in ((1, 2000), (16, 4000)):
                for client in ("aiohttp", "lean"):
                    cpu0, me0 = cpu_seconds(proc.pid), time.process_time()
                    if client == "aiohttp":
                        rate, lat = await creates(session, url, clients, total)
                    else:
                        ns = await make_ns(session, url)
                        rate, lat = await lean_creates(url, ctx, token, ns, clients, total)
                    server_ms = (cpu_seconds(proc.pid) - cpu0) * 1000 / total
                    client_ms = (time.process_time() - me0) * 1000 / total
                    print(
                        f"create ConfigMap, {clients:>2} client(s), {client:>7}: {rate:6.0f} creates/s   "
                        f"p50 {ms(pct(lat, 50))}  p99 {ms(pct(lat, 99))}   "
                        f"CPU/create: server {server_ms:.2f} ms, client {client_ms:.2f} ms"
                    )
            if "--creates-only" in sys.argv:
                return
            gets, lists = await reads(session, url, 500)
            print(f"GET one ConfigMap:                p50 {ms(pct(gets, 50))}  p99 {ms(pct(gets, 99))}")
            print(f"LIST 100 ConfigMaps:              p50 {ms(pct(lists, 50))}  p99 {ms(pct(lists, 99))}")
            for watchers, events in ((1, 200), (100, 50)):
                lat = await watch_latency(session, url, watchers, events)
                print(
                    f"watch delivery, {watchers:>3} watcher(s):    p50 {ms(pct(lat, 50))}  "
                    f"p99 {ms(pct(lat, 99))}  (from create request start, {len(lat)} events)"
                )
            await local_path(base, url, token)
            await scheduler_writes(url, ctx, token, proc.pid, 2000, 8)
            print(
                f"(machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end "
                f"({load0:.1f} at the start), SQLite, "
                f"python {sys.version.split()[0]})"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)
        _ = statistics


if __name__ == "__main__":
    asyncio.run(main())
