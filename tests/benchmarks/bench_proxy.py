"""Service proxy benchmark: requests/s through a ClusterIP against the same requests straight to
the endpoint, and the time from an endpoint change (API write) to the rules being in place.

Needs root, nft and ip (like tests/proxy). Starts a real ``kybern server`` (no node agent),
one busybox httpd in a network namespace as the endpoint, and the proxies in this process.
Each request is a new connection (HTTP/1.0), so every one goes through the proxy's choice of
endpoint; rounds alternate direct / ClusterIP so machine load hits both alike.

    sudo .venv/bin/python tests/benchmarks/bench_proxy.py [--seconds 1] [--rounds 10] [--changes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from kybern.plugins.proxy.proxier import NftablesProxier  # noqa: E402
from kybern.plugins.proxy.userspace.proxier import UserspaceProxier  # noqa: E402
from proxy.helpers import client_for, make_service, set_endpoints  # noqa: E402
from proxy.nettopo import HTTP_PORT, Topology, nft_problem, sh  # noqa: E402
from support.cluster import running_server  # noqa: E402

CONCURRENCY = 16


async def _one(host: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        await writer.drain()
        data = await reader.read()
        return data.startswith(b"HTTP/1.") and b" 200 " in data[:20]
    except OSError:
        return False
    finally:
        writer.close()


async def rate(host: str, port: int, seconds: float) -> float:
    """Completed requests per second with CONCURRENCY clients, new connection each."""
    done = 0
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            if await _one(host, port):
                done += 1
            else:
                errors += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    if errors:
        print(f"  ({errors} failed requests to {host}:{port})")
    return done / (time.monotonic() - start)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def compare(label: str, cip: str, endpoint: str, seconds: float, rounds: int) -> None:
    """Short rounds, direct and ClusterIP back to back (order swapped every pair): on a loaded
    machine the per-pair ratio is steadier than a ratio of totals."""
    direct, via, ratios = [], [], []
    for i in range(rounds):
        if i % 2:
            v = await rate(cip, 80, seconds)
            d = await rate(endpoint, HTTP_PORT, seconds)
        else:
            d = await rate(endpoint, HTTP_PORT, seconds)
            v = await rate(cip, 80, seconds)
        direct.append(d)
        via.append(v)
        ratios.append(v / d if d else 0.0)
    d, v = statistics.median(direct), statistics.median(via)
    print(
        f"{label}: direct {d:.0f} req/s, via ClusterIP {v:.0f} req/s (medians of {rounds} rounds); "
        f"ratio of medians {v / d:.3f}, median per-pair ratio {statistics.median(ratios):.3f}"
    )
    print(f"  rounds direct {[round(x) for x in direct]}\n  rounds via    {[round(x) for x in via]}")


async def interleaved(label: str, cip: str, endpoint: str, n: int) -> None:
    """One client, requests alternating direct / ClusterIP: load drift hits both equally, so
    the ratio of median latencies is the steadiest figure on a busy machine."""
    direct: list[float] = []
    via: list[float] = []
    for i in range(2 * n):
        target, out = ((endpoint, HTTP_PORT), direct) if i % 2 == 0 else ((cip, 80), via)
        t0 = time.perf_counter()
        if await _one(*target):
            out.append(time.perf_counter() - t0)
    d, v = statistics.median(direct), statistics.median(via)
    print(
        f"{label} (1 client, {n} requests each, alternating): median latency direct {d * 1e6:.0f} us, "
        f"via ClusterIP {v * 1e6:.0f} us; throughput ratio {d / v:.3f}"
    )


async def change_latency(api, proxier, ips: list[str], spare: str, n: int) -> None:  # type: ignore[no-untyped-def]
    """Add/remove one endpoint n times; time API write -> proxier applied it."""
    end_to_end: list[float] = []
    proxier.sync_latencies.clear()
    for i in range(n):
        want = set(ips) | ({spare} if i % 2 == 0 else set())
        t0 = time.monotonic()
        await set_endpoints(api, "bench", sorted(want))
        ok = await proxier.wait_until(
            lambda s, want=want: (
                {ep.ip for st in s.values() if st.port.name == "bench" for ep in st.endpoints} == want
            ),
            10,
        )
        if ok:
            end_to_end.append(time.monotonic() - t0)
    inner = proxier.sync_latencies
    print(
        f"  endpoint change -> rules in place (API write to applied, {len(end_to_end)} changes): "
        f"p50 {pct(end_to_end, 50) * 1000:.1f} ms, p99 {pct(end_to_end, 99) * 1000:.1f} ms"
    )
    if inner:
        print(
            f"  informer event -> rules in place: p50 {pct(inner, 50) * 1000:.1f} ms, "
            f"p99 {pct(inner, 99) * 1000:.1f} ms"
        )


async def main_async(args: argparse.Namespace, server) -> None:  # type: ignore[no-untyped-def]
    net = Topology().open()
    try:
        ep = net.add_host()
        spare = net.add_host()
        api = client_for(server)
        svc = await make_service(api, "bench")
        cip = svc["spec"]["clusterIP"]
        await set_endpoints(api, "bench", [ep.ip])
        node = f"bench{int(time.time()) % 100000}"
        proxier = NftablesProxier(client_for(server), node, manage_routes=False)
        await proxier.start()
        try:
            await proxier.wait_until(
                lambda s: any(st.port.name == "bench" and st.endpoints for st in s.values()), 10
            )
            await compare("nftables", cip, ep.ip, args.seconds, args.rounds)
            await interleaved("nftables", cip, ep.ip, args.requests)
            await change_latency(api, proxier, [ep.ip], spare.ip, args.changes)
            await set_endpoints(api, "bench", [ep.ip])
        finally:
            await proxier.stop()
        if not args.skip_userspace:
            iface = f"kpb{node[-6:]}"
            us = UserspaceProxier(client_for(server), interface=iface, node_ports=False)
            await us.start()
            try:
                await us.wait_until(
                    lambda s: any(st.port.name == "bench" and st.endpoints for st in s.values()), 10
                )
                await compare("userspace", cip, ep.ip, args.seconds, args.rounds)
                await interleaved("userspace", cip, ep.ip, args.requests)
                await change_latency(api, us, [ep.ip], spare.ip, min(args.changes, 30))
            finally:
                await us.stop()
                sh("ip", "link", "del", iface, check=False)
        await api.delete("services", "bench", namespace="default")
        await api.close()
    finally:
        net.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measuring round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1000, help="requests per path, interleaved run")
    parser.add_argument("--changes", type=int, default=100, help="endpoint changes to time")
    parser.add_argument("--skip-userspace", action="store_true")
    args = parser.parse_args()
    problem = nft_problem()
    if problem:
        sys.exit(f"cannot run: {problem}")
    with (
        tempfile.TemporaryDirectory(prefix="kybern-bench-proxy-") as tmp,
        running_server(Path(tmp), "--disable", "dns") as server,
    ):
        asyncio.run(main_async(args, server))


if __name__ == "__main__":
    main()
