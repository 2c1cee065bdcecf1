"""Cluster DNS benchmark: queries/s and latency for service names on loopback, and how fast
readiness changes reach Endpoints.

Not a test (prints figures, asserts nothing timed). Run it alone:

    .venv/bin/python tests/benchmarks/bench_dns.py [--services 200] [--seconds 5] [--clients 4]

A real ``kybern server`` (no kubelet) serves cluster DNS on a loopback port; ``--services``
ClusterIP Services are created, then ``--clients`` threads send A queries for random service
names over UDP (one outstanding query each, pre-encoded wire) for ``--seconds``: the figures
are answered queries per second and p50/p99 latency. A second run sends names that miss
(what the ndots:5 search path produces), then TCP. Last, pod readiness is flipped
``--flips`` times and the time until the Endpoints watch shows the change is reported (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "services"))
sys.path.insert(0, str(TESTS / "dns"))

import dns.message  # noqa: E402
import dns.query  # noqa: E402
from dnshelp import free_udp_tcp_port  # noqa: E402
from support.cluster import running_server  # noqa: E402
from svchelp import client_for, pod_body, set_status, start_pod  # noqa: E402

NS = "bench"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def udp_load(port: int, names: list[str], seconds: float, clients: int) -> tuple[int, list[float], int]:
    """(answered, latencies in s, errors) from ``clients`` threads for ``seconds``."""
    wires = [dns.message.make_query(n, "A").to_wire() for n in names]
    latencies: list[float] = []
    lock = threading.Lock()
    errors = [0]
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
        while time.monotonic() < stop:
            wire = bytearray(rng.choice(wires))
            wire[0:2] = rng.randrange(65536).to_bytes(2, "big")
            t0 = time.perf_counter()
            sock.send(wire)
            try:
                while True:
                    reply = sock.recv(4096)
                    if reply[0:2] == wire[0:2]:
                        break
            except TimeoutError:
                with lock:
                    errors[0] += 1
                continue
            mine.append(time.perf_counter() - t0)
        sock.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies), latencies, errors[0]


def tcp_load(port: int, names: list[str], seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while time.monotonic() < stop:
            q = dns.message.make_query(random.choice(names), "A")
            t0 = time.perf_counter()
            dns.query.send_tcp(sock, q)
            dns.query.receive_tcp(sock)
            latencies.append(time.perf_counter() - t0)
    return len(latencies), latencies


def report(label: str, answered: int, latencies: list[float], seconds: float, errors: int = 0) -> None:
    print(
        f"{label:<34} {answered / seconds:9.0f} q/s   p50 {pct(latencies, 0.5) * 1e3:6.2f} ms   "
        f"p99 {pct(latencies, 0.99) * 1e3:6.2f} ms   timeouts {errors}"
    )


async def setup(server: Any, count: int) -> None:
    async with client_for(server) as client:
        await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i}"},
                "spec": {"selector": {"app": f"a{i}"}, "ports": [{"name": "http", "port": 80}]},
            }
            async with sem:
                await client.create("services", body, NS)

        await asyncio.gather(*(one(i) for i in range(count)))


async def endpoint_reaction(server: Any, flips: int) -> list[float]:
    """Seconds from a pod status write to the Endpoints watch showing the change."""
    async with client_for(server) as client, client_for(server) as watcher:
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "flip"},
            "spec": {"selector": {"app": "flip"}, "ports": [{"port": 80}]},
        }
        await client.create("services", body, NS)
        await start_pod(client, NS, pod_body("flip-0", {"app": "flip"}), "10.42.9.9", ready=False)
        await asyncio.sleep(1.0)
        listing = await watcher.list("endpoints", NS)
        rv = listing["metadata"]["resourceVersion"]
        seen: asyncio.Queue[tuple[float, bool]] = asyncio.Queue()

        async def watch() -> None:
            async for ev in watcher.watch("endpoints", NS, resource_version=rv):
                obj = ev.object
                if ev.type == "BOOKMARK" or obj.get("metadata", {}).get("name") != "flip":
                    continue
                ready = any(s.get("addresses") for s in obj.get("subsets") or [])
                await seen.put((time.perf_counter(), ready))

        task = asyncio.create_task(watch())
        out = []
        ready = False
        for _ in range(flips):
            ready = not ready
            t0 = time.perf_counter()
            await set_status(client, NS, "flip-0", "10.42.9.9", ready)
            while True:
                t1, state = await asyncio.wait_for(seen.get(), 10)
                if state == ready:
                    out.append(t1 - t0)
                    break
        task.cancel()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--flips", type=int, default=30)
    args = parser.parse_args()
    port = free_udp_tcp_port()
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as tmp:
        with running_server(
            Path(tmp),
            "--disable",
            "kubelet",
            "--dns-listen",
            f"127.0.0.1:{port}",
            "--dns-upstream",
            "127.0.0.1:9",
        ) as server:
            asyncio.run(setup(server, args.services))
            # let the controllers finish the Endpoints and slices first (each write also
            # clears the DNS answer cache): the figures are for a settled cluster
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                out = server.kubectl("get", "endpointslices", "-n", NS, "--no-headers", check=False).stdout
                if len(out.splitlines()) >= args.services:
                    break
                time.sleep(1)
            time.sleep(2)
            names = [f"svc-{i}.{NS}.svc.cluster.local" for i in range(args.services)]
            deadline = time.monotonic() + 60
            last = names[-1]
            while time.monotonic() < deadline:
                answer = dns.query.udp(dns.message.make_query(last, "A"), "127.0.0.1", port=port, timeout=2)
                if answer.answer:
                    break
                time.sleep(0.2)
            print(f"cluster DNS on 127.0.0.1:{port}, {args.services} Services, {args.clients} UDP clients")
            n, lat, err = udp_load(port, names, args.seconds, args.clients)
            report("A, service names (UDP)", n, lat, args.seconds, err)
            misses = [f"svc-{i}.{NS}.svc.cluster.local.{NS}.svc.cluster.local" for i in range(args.services)]
            n, lat, err = udp_load(port, misses, args.seconds, args.clients)
            report("NXDOMAIN, search-path misses (UDP)", n, lat, args.seconds, err)
            n, lat = tcp_load(port, names, args.seconds)
            report("A, service names (TCP, 1 conn)", n, lat, args.seconds)
            reaction = asyncio.run(endpoint_reaction(server, args.flips))
            print(
                f"pod readiness -> Endpoints watch event: p50 {statistics.median(reaction) * 1e3:.0f} ms, "
                f"p99 {pct(reaction, 0.99) * 1e3:.0f} ms over {len(reaction)} flips"
            )


if __name__ == "__main__":
    main()
