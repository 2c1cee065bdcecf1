"""API server benchmark: create throughput, GET/LIST latency, watch delivery latency.

Run alone: ``.venv/bin/python tests/benchmarks/bench_apiserver.py [--creates-only]`` (starts its own
``kybern server --disable-agent`` on SQLite in a temp dir). Prints figures, asserts nothing.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: Path) -> tuple[subprocess.Popen[bytes], str, str, ssl.SSLContext]:
    port = free_port()
    data = base / "data"
    exe = Path(sys.executable).parent / "kybern"
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen(
        [
            str(exe),
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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LeanClient:
    """One keep-alive HTTPS connection speaking just enough HTTP/1.1 for the benchmark."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, token: str) -> None:
        self.host, self.port, self.ctx = host, port, ctx
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx)
        assert self.reader is not None
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        pairs = (line.partition(":") for line in lines[1:] if line)
        headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        chunks = []
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
