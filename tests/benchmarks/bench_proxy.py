"""Service proxy benchmark: requests/s through a ClusterIP against the same requests straight to
the endpoints, and the time from an endpoint change (API write) to the rules being in place.

Needs root, nft and ip (like tests/proxy). Starts a real ``kybern server`` (no node agent),
endpoints in network namespaces, and the proxies in this process. Each request is a new
connection (HTTP/1.0), so every one goes through the proxy's choice of endpoint; rounds
alternate direct / ClusterIP so machine load hits both alike.

Method (what made earlier figures unfair to the ClusterIP):
- The endpoints run a small pre-forked server with a listen backlog of 4096, not busybox httpd,
  whose backlog of 9 overflowed with 16 clients: each overflow is a 1 s SYN retransmit.
- Direct requests leave from the address the kernel picks for the ClusterIP (the host's
  default-route address). The ClusterIP's are masqueraded to the bridge address: the two
  paths then never share an endpoint-side address and port, where differing TCP timestamps
  would make the endpoint's PAWS check drop SYNs.
- Both paths reach the same endpoints: the direct client picks one at random per connection.
- The endpoints' listen overflows and PAWS drops, and the client's SYN retransmits, are
  printed per comparison: non-zero values mean stalls, not proxy cost.
- Each comparison runs from the host (ClusterIP traffic masqueraded) and from two client
  pods in the cluster CIDR (DNAT only), one for each path (see ``compare``).
- Rounds are short (0.5 s) and many: the median of per-pair ratios is what to read.

    sudo .venv/bin/python tests/benchmarks/bench_proxy.py [--seconds 0.5] [--rounds 20] [--changes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from kybern.plugins.proxy.proxier import NftablesProxier  # noqa: E402
from kybern.plugins.proxy.userspace.proxier import UserspaceProxier  # noqa: E402
from proxy.helpers import client_for, make_service, set_endpoints  # noqa: E402
from proxy.nettopo import HTTP_PORT, Host, Topology, nft_problem, sh, wait_http  # noqa: E402
from proxyload import CONCURRENCY, Target, one_request, rate  # noqa: E402
from support.cluster import running_server  # noqa: E402

#: the endpoints' server: accept, read the request, answer the namespace's name, close; forks
#: WORKERS processes on one socket (each dies with its parent)
SERVER = r"""
import ctypes, os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
body = sys.argv[2].encode()
head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
reply = head % len(body) + body
for _ in range(int(sys.argv[3]) - 1):
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        break
while True:
    conn, _ = s.accept()
    try:
        conn.recv(4096)
        conn.sendall(reply)
    except OSError:
        pass
    conn.close()
"""
WORKERS = 2
#: the load generator, run inside a pod's namespace for the in-cluster comparison
LOAD = Path(__file__).resolve().parent / "proxyload.py"


def serve(host: Host) -> None:
    """Start the benchmark server in the host's namespace (its httpd was not started)."""
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            host.name,
            sys.executable,
            "-c",
            SERVER,
            str(HTTP_PORT),
            host.name,
            str(WORKERS),
        ],
        stdin=subprocess.DEVNULL,
    )
    host.extra.append(proc)
    wait_http(f"http://{host.ip}:{HTTP_PORT}/")


def source_for(ip: str) -> str | None:
    """The source address the kernel picks for traffic to ``ip``."""
    found = re.search(r"\bsrc (\S+)", sh("ip", "-4", "route", "get", ip, check=False).stdout)
    return found.group(1) if found else None


def counters(run: Callable[..., subprocess.CompletedProcess[str]]) -> dict[str, int]:
    """Absolute TCP counters of one namespace (``nstat -az``)."""
    out: dict[str, int] = {}
    for line in run("nstat", "-az", check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


class Stalls:
    """Listen overflows and PAWS drops at the endpoints; SYN retransmits of the whole host (its
    counter includes whatever else runs there, so read it with the other two)."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts
        self.before = self._now()

    def _now(self) -> dict[str, int]:
        total: collections.Counter[str] = collections.Counter()
        for host in self.hosts:
            c = counters(host.run)
            total["listen overflows"] += c.get("TcpExtListenOverflows", 0)
            total["PAWS drops"] += c.get("TcpExtPAWSTimewait", 0)
        total["host SYN retransmits"] = counters(sh).get("TcpExtTCPSynRetrans", 0)
        return dict(total)

    def report(self) -> str:
        now = self._now()
        return ", ".join(f"{k} {now[k] - self.before.get(k, 0)}" for k in now)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def rate_in(pod: Host, targets: list[Target], seconds: float) -> float:
    """``rate`` measured by a client process inside the pod's namespace."""
    spec = ",".join(f"{ip}:{port}" for ip, port in targets)
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", pod.name, sys.executable, str(LOAD), spec, str(seconds),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    try:
        return float(out.decode().split()[-1])
    except (IndexError, ValueError):
        return 0.0


async def compare(
    label: str,
    cip: str,
    hosts: list[Host],
    seconds: float,
    rounds: int,
    pods: tuple[Host, Host] | None = None,
) -> None:
    """Short rounds, direct and ClusterIP back to back (order swapped every pair): on a loaded
    machine the per-pair ratio is steadier than a ratio of totals.

    From the host unless ``pods`` (two client namespaces in the cluster CIDR, so nothing is
    masqueraded): the first sends the direct requests, the second the ClusterIP ones. One pod
    doing both would reuse its source ports towards the endpoint with other timestamps
    (PAWS drops again)."""
    endpoints = [(h.ip, HTTP_PORT) for h in hosts]
    local = source_for(cip)

    async def measure_direct() -> float:
        return await (rate_in(pods[0], endpoints, seconds) if pods else rate(endpoints, seconds, local))

    async def measure_via() -> float:
        return await (rate_in(pods[1], [(cip, 80)], seconds) if pods else rate([(cip, 80)], seconds))

    direct, via, ratios = [], [], []
    stalls = Stalls(hosts)
    for i in range(rounds):
        if i % 2:
            v = await measure_via()
            d = await measure_direct()
        else:
            d = await measure_direct()
            v = await measure_via()
        direct.append(d)
        via.append(v)
        ratios.append(v / d if d else 0.0)
    d, v = statistics.median(direct), statistics.median(via)
    where = "in pods" if pods else "on the host"
    print(
        f"{label}, {len(hosts)} endpoint(s), {CONCURRENCY} clients {where}: direct {d:.0f} req/s, "
        f"via ClusterIP {v:.0f} req/s (medians of {rounds} rounds); ratio of medians {v / d:.3f}, "
        f"median per-pair ratio {statistics.median(ratios):.3f}"
    )
    print(f"  rounds direct {[round(x) for x in direct]}\n  rounds via    {[round(x) for x in via]}")
    print(f"  stalls: {stalls.report()}")


async def mixed(label: str, cip: str, hosts: list[Host], seconds: float) -> None:
    """CONCURRENCY clients on the host, each alternating a direct and a ClusterIP request, so
    both paths live through the same moments of machine load. With all clients on one path
    its throughput would be CONCURRENCY / mean latency (Little's law): the ratio of the mean
    latencies is the throughput ratio, without the drift between rounds."""
    endpoints = [(h.ip, HTTP_PORT) for h in hosts]
    local = source_for(cip)
    latencies: dict[bool, list[float]] = {False: [], True: []}
    deadline = time.monotonic() + seconds
    stalls = Stalls(hosts)

    async def worker(via: bool) -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            if await one_request((cip, 80) if via else random.choice(endpoints), None if via else local):
                latencies[via].append(time.perf_counter() - t0)
            via = not via

    await asyncio.gather(*(worker(i % 2 == 1) for i in range(CONCURRENCY)))
    d, v = statistics.fmean(latencies[False]), statistics.fmean(latencies[True])
    print(
        f"{label}, {len(hosts)} endpoint(s), {CONCURRENCY} clients on the host each alternating "
        f"({len(latencies[False])} + {len(latencies[True])} requests): mean latency direct {d * 1e6:.0f} us, "
        f"via ClusterIP {v * 1e6:.0f} us; throughput ratio {d / v:.3f}"
    )
    print(f"  stalls: {stalls.report()}")


async def interleaved(label: str, cip: str, hosts: list[Host], n: int) -> None:
    """One client, requests alternating direct / ClusterIP: load drift hits both equally, so
    the ratio of median latencies is the steadiest figure on a busy machine."""
    endpoints = [(h.ip, HTTP_PORT) for h in hosts]
    local = source_for(cip)
    direct: list[float] = []
    via: list[float] = []
    for i in range(2 * n):
        t0 = time.perf_counter()
        if i % 2 == 0:
            if await one_request(random.choice(endpoints), local):
                direct.append(time.perf_counter() - t0)
        elif await one_request((cip, 80)):
            via.append(time.perf_counter() - t0)
    d, v = statistics.median(direct), statistics.median(via)
    print(
        f"{label}, {len(hosts)} endpoint(s) (1 client, {n} requests each, alternating): median latency "
        f"direct {d * 1e6:.0f} us, via ClusterIP {v * 1e6:.0f} us; throughput ratio {d / v:.3f}"
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


@dataclass
class Net:
    """The benchmark's namespaces: endpoints, the userspace run's endpoint, a spare address for
    the endpoint changes, two client pods, and the CIDR they are all in (the cluster's)."""

    hosts: list[Host]
    other: Host
    spare: Host
    pods: tuple[Host, Host]
    cidr: str


async def runs(args: argparse.Namespace, server, api, net: Net) -> None:  # type: ignore[no-untyped-def]
    """nftables against ``hosts``, then userspace against ``other``: the userspace proxy's
    connections leave from the bridge address, as the masqueraded ones did, and would meet
    their TIME_WAIT sockets (other timestamps: PAWS drops) on the same endpoint for 60 s."""
    hosts, other, spare = net.hosts, net.other, net.spare
    svc = await make_service(api, "bench")
    cip = svc["spec"]["clusterIP"]
    node = f"bench{int(time.time()) % 100000}"
    # the pods' CIDR is the cluster's: pod traffic is DNATed only; the host's is masqueraded
    proxier = NftablesProxier(client_for(server), node, manage_routes=False, cluster_cidr=net.cidr)
    await proxier.start()
    try:
        for count in sorted({1, args.endpoints}):
            chosen = hosts[:count]
            want = {h.ip for h in chosen}
            await set_endpoints(api, "bench", sorted(want))
            await proxier.wait_until(
                lambda s, want=want: (
                    {ep.ip for st in s.values() if st.port.name == "bench" for ep in st.endpoints} == want
                ),
                10,
            )
            await compare("nftables", cip, chosen, args.seconds, args.rounds)
            await compare("nftables", cip, chosen, args.seconds, args.rounds, net.pods)
            await mixed("nftables", cip, chosen, args.seconds * args.rounds)
            await interleaved("nftables", cip, chosen, args.requests)
        await change_latency(api, proxier, [h.ip for h in hosts[:1]], spare.ip, args.changes)
    finally:
        await proxier.stop()
    if not args.skip_userspace:
        await set_endpoints(api, "bench", [other.ip])
        iface = f"kpb{node[-6:]}"
        us = UserspaceProxier(client_for(server), interface=iface, node_ports=False)
        await us.start()
        try:
            await us.wait_until(
                lambda s: any(st.port.name == "bench" and st.endpoints for st in s.values()), 10
            )
            await compare("userspace", cip, [other], args.seconds, args.rounds)
            await mixed("userspace", cip, [other], args.seconds * args.rounds)
            await interleaved("userspace", cip, [other], args.requests)
            await change_latency(api, us, [other.ip], spare.ip, min(args.changes, 30))
        finally:
            await us.stop()
            sh("ip", "link", "del", iface, check=False)
    await api.delete("services", "bench", namespace="default")


async def main_async(args: argparse.Namespace, server) -> None:  # type: ignore[no-untyped-def]
    topo = Topology().open()
    try:
        hosts = [topo.add_host(serve=False) for _ in range(max(1, args.endpoints))]
        other = topo.add_host(serve=False)
        for host in [*hosts, other]:
            serve(host)
        spare = topo.add_host(serve=False)
        pods = (topo.add_host(serve=False), topo.add_host(serve=False))
        net = Net(hosts, other, spare, pods, f"{topo.gateway.rpartition('.')[0]}.0/24")
        api = client_for(server)
        try:
            await runs(args, server, api, net)
        finally:
            await api.close()
    finally:
        topo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one measuring round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000, help="requests per path, interleaved run")
    parser.add_argument("--changes", type=int, default=100, help="endpoint changes to time")
    parser.add_argument("--endpoints", type=int, default=3, help="also compare with this many endpoints")
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
