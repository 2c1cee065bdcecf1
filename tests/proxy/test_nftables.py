"""The nftables proxy against a real API server, real nftables and real test hosts.

Endpoints are busybox httpd in network namespaces on a test bridge; the proxy runs in the test
with its own table. Requests go from the host (output hook) and from a namespace (prerouting).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import time
from typing import Any

import pytest
from kybern.plugins.proxy.proxier import NftablesProxier
from kybern.plugins.proxy.routes import ROUTE_PROTO, local_addresses
from support.cluster import Server

from .helpers import client_for, make_service, set_endpoints
from .nettopo import HTTP_PORT, Topology, get, sh, udp_ask


def _eps(proxier: NftablesProxier, name: str) -> set[str]:
    return {ep.ip for st in proxier.applied.values() if st.port.name == name for ep in st.endpoints}


async def _start(server: Server, node: str, **kw: Any) -> NftablesProxier:
    proxier = NftablesProxier(client_for(server), node, manage_routes=kw.pop("manage_routes", False), **kw)
    await proxier.start()
    return proxier


async def _count(url: str, n: int) -> collections.Counter[str]:
    def go() -> collections.Counter[str]:
        return collections.Counter(get(url) for _ in range(n))

    return await asyncio.to_thread(go)


def test_clusterip_balances_follows_endpoints_and_serves_pods(
    server: Server, net: Topology, node_name: str
) -> None:
    hosts = [net.add_host() for _ in range(3)]
    spare = net.add_host()
    client = net.add_host(serve=False)

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(api, "web")
        cip = svc["spec"]["clusterIP"]
        url = f"http://{cip}/"
        await set_endpoints(api, "web", [h.ip for h in hosts], not_ready=(spare.ip,))
        # the test bridge as the cluster CIDR: the client "pod" is not masqueraded, so replies
        # from an endpoint on its own bridge must be un-NATed by the bridge netfilter path
        proxier = await _start(server, node_name, cluster_cidr=f"10.99.{net.subnet}.0/24")
        try:
            assert await proxier.wait_until(lambda _s: _eps(proxier, "web") == {h.ip for h in hosts}, 10)
            seen = await _count(url, 300)
            assert set(seen) == {h.name for h in hosts}, seen
            assert min(seen.values()) > 30, seen  # random per connection: ~100 each
            # from a "pod": prerouting DNAT, forwarded over the bridge, masqueraded back
            out = await asyncio.to_thread(client.fetch, url)
            assert out in {h.name for h in hosts}
            # a not-ready endpoint gets nothing; removing one takes it out
            await set_endpoints(api, "web", [h.ip for h in hosts[:2]] + [spare.ip], not_ready=(spare.ip,))
            t0 = time.monotonic()
            assert await proxier.wait_until(lambda _s: _eps(proxier, "web") == {h.ip for h in hosts[:2]}, 10)
            print(f"endpoint removal in place after {time.monotonic() - t0:.3f}s")
            seen = await _count(url, 100)
            assert set(seen) == {hosts[0].name, hosts[1].name}, seen
            # recovery of the not-ready one: it serves again
            await set_endpoints(api, "web", [hosts[0].ip, spare.ip])
            assert await proxier.wait_until(lambda _s: _eps(proxier, "web") == {hosts[0].ip, spare.ip}, 10)
            seen = await _count(url, 60)
            assert set(seen) == {hosts[0].name, spare.name}, seen
        finally:
            await proxier.stop()
            await api.delete("services", "web", namespace="default")
            await api.close()

    asyncio.run(scenario())


def test_no_endpoints_rejects_and_nodeport_answers_on_host_address(
    server: Server, net: Topology, node_name: str
) -> None:
    host = net.add_host()

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(api, "np", kind="NodePort")
        cip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        proxier = await _start(server, node_name)
        try:
            assert await proxier.wait_until(lambda s: any(st.port.name == "np" for st in s.values()), 10)
            # no endpoints: refused at once (reject), not a timeout
            with pytest.raises(ConnectionRefusedError):
                try:
                    await asyncio.to_thread(get, f"http://{cip}/", 3)
                except OSError as exc:
                    raise exc.reason if hasattr(exc, "reason") else exc from None  # type: ignore[misc]
            # a ClusterIP on a port that is not the service's: refused too
            with pytest.raises(ConnectionRefusedError):
                try:
                    await asyncio.to_thread(get, f"http://{cip}:81/", 3)
                except OSError as exc:
                    raise exc.reason if hasattr(exc, "reason") else exc from None  # type: ignore[misc]
            await set_endpoints(api, "np", [host.ip])
            assert await proxier.wait_until(lambda _s: _eps(proxier, "np") == {host.ip}, 10)
            addresses = sorted(a for a in await local_addresses() if not a.startswith("127."))
            assert addresses
            for address in addresses[:1]:
                assert await asyncio.to_thread(get, f"http://{address}:{node_port}/") == host.name
            assert await asyncio.to_thread(get, f"http://{cip}/") == host.name
        finally:
            await proxier.stop()
            await api.delete("services", "np", namespace="default")
            await api.close()

    asyncio.run(scenario())


def test_session_affinity_client_ip(server: Server, net: Topology, node_name: str) -> None:
    hosts = [net.add_host() for _ in range(3)]

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(
            api,
            "sticky",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        )
        await set_endpoints(api, "sticky", [h.ip for h in hosts])
        proxier = await _start(server, node_name)
        try:
            assert await proxier.wait_until(lambda _s: len(_eps(proxier, "sticky")) == 3, 10)
            seen = await _count(f"http://{svc['spec']['clusterIP']}/", 30)
            assert len(seen) == 1, seen
        finally:
            await proxier.stop()
            await api.delete("services", "sticky", namespace="default")
            await api.close()

    asyncio.run(scenario())


def _table(name: str) -> dict[str, Any] | None:
    out = sh("nft", "-j", "list", "table", "ip", name, check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_rules_removed_on_stop_and_rebuilt_at_start(server: Server, net: Topology, node_name: str) -> None:
    host = net.add_host()
    table = f"kybern-proxy-{node_name}"

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(api, "rebuild")
        await set_endpoints(api, "rebuild", [host.ip])
        url = f"http://{svc['spec']['clusterIP']}/"
        try:
            proxier = await _start(server, node_name)
            assert await proxier.wait_until(lambda _s: _eps(proxier, "rebuild") == {host.ip}, 10)
            assert await asyncio.to_thread(get, url) == host.name
            await proxier.stop()
            assert _table(table) is None, "the table outlived the proxy"
            # a leftover from a crashed run: a stale chain and element must not survive the start
            sh("nft", "add", "table", "ip", table)
            sh("nft", "add", "chain", "ip", table, "stale-chain")
            # tables of proxies that died without cleaning up go; live ones' tables stay
            dead = subprocess.Popen(["true"])
            dead.wait()
            for suffix, pid in (("dead", dead.pid), ("alive", os.getpid())):
                comment = f'{{ comment "kybern service proxy pid={pid}: test"; }}'
                sh("nft", "add", "table", "ip", f"{table}-{suffix}", comment)
            proxier = await _start(server, node_name, full_sync_period=1.0)
            try:
                assert _table(f"{table}-dead") is None
                assert _table(f"{table}-alive") is not None
                names = {o["chain"]["name"] for o in _table(table)["nftables"] if "chain" in o}  # type: ignore[index]
                assert "stale-chain" not in names
                assert await asyncio.to_thread(get, url) == host.name
                # someone flushes our map: the periodic full sync puts the rules back (checked in
                # the table, not with traffic: unmatched, it would leave by the default route)
                cip = svc["spec"]["clusterIP"]

                def in_map() -> bool:
                    return cip in sh("nft", "list", "map", "ip", table, "service-ips").stdout

                sh("nft", "flush", "map", "ip", table, "service-ips")
                assert not in_map()
                deadline = time.monotonic() + 15
                while not in_map():
                    assert time.monotonic() < deadline, "rules not repaired by the full sync"
                    await asyncio.sleep(0.2)
                assert await asyncio.to_thread(get, url) == host.name
            finally:
                await proxier.stop()
        finally:
            for suffix in ("dead", "alive"):
                sh("nft", "delete", "table", "ip", f"{table}-{suffix}", check=False)
            await api.delete("services", "rebuild", namespace="default")
            await api.close()

    asyncio.run(scenario())


def test_routes_to_other_nodes_pod_cidrs(server: Server, net: Topology, node_name: str) -> None:
    peer = net.add_host()  # another "host" on the same segment as this one
    cidr = f"10.97.{net.subnet}.0/24"
    remote_pod = f"10.97.{net.subnet}.5"  # a "pod" of the peer: an address behind it
    peer.run("ip", "addr", "add", f"{remote_pod}/32", "dev", "lo")
    local_cidr = f"10.96.{net.subnet}.0/24"

    def node(name: str, ip: str, pod_cidr: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        } | {"status": {"addresses": [{"type": "InternalIP", "address": ip}]}}

    def route(prefix: str) -> str:
        return sh("ip", "route", "show", prefix, "proto", ROUTE_PROTO).stdout.strip()

    async def scenario() -> None:
        api = client_for(server)
        remote, same_host = f"{node_name}-remote", f"{node_name}-local"
        for n in (node(remote, peer.ip, cidr), node(same_host, net.gateway, local_cidr)):
            created = await api.create("nodes", n)
            n["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
            await api.update("nodes", n, subresource="status")
        proxier = await _start(server, node_name, manage_routes=True)
        try:
            assert await proxier.wait_until(lambda _s: cidr in proxier.routes.installed, 10)
            assert f"via {peer.ip}" in route(cidr)
            assert route(local_cidr) == ""  # a node on this host needs no route
            # the other node's pod answers by its IP, and behind a ClusterIP (DNAT, then routed)
            assert await asyncio.to_thread(get, f"http://{remote_pod}:{HTTP_PORT}/") == peer.name
            svc = await make_service(api, "remote")
            await set_endpoints(api, "remote", [remote_pod])
            assert await proxier.wait_until(lambda _s: _eps(proxier, "remote") == {remote_pod}, 10)
            assert await asyncio.to_thread(get, f"http://{svc['spec']['clusterIP']}/") == peer.name
            await api.delete("services", "remote", namespace="default")
            await api.delete("nodes", remote)
            assert await proxier.wait_until(lambda _s: cidr not in proxier.routes.installed, 10)
            assert route(cidr) == ""
        finally:
            await proxier.stop()
            sh("ip", "route", "del", cidr, check=False)
            for name in (remote, same_host):
                try:
                    await api.delete("nodes", name)
                except Exception:
                    pass
            await api.close()

    asyncio.run(scenario())


def test_pods_on_two_local_bridges_reach_each_other_without_routes(net: Topology) -> None:
    """Two agents on one machine: each node's bridge is a local interface, so the host routes
    between them with no route from the proxy (what ``node_routes`` relies on)."""
    other = Topology().open()
    try:
        a = net.add_host(serve=False)
        b = other.add_host()
        assert a.fetch(f"http://{b.ip}:{HTTP_PORT}/") == b.name
    finally:
        other.close()


def test_udp_service(server: Server, net: Topology, node_name: str) -> None:
    hosts = [net.add_host(serve=False) for _ in range(2)]
    for h in hosts:
        h.serve_udp(5353)

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(api, "dnsish", port=53, protocol="UDP", port_name="dns")
        await set_endpoints(api, "dnsish", [h.ip for h in hosts], port=5353, protocol="UDP", port_name="dns")
        proxier = await _start(server, node_name)
        try:
            assert await proxier.wait_until(lambda _s: len(_eps(proxier, "dnsish")) == 2, 10)
            answer = await asyncio.to_thread(udp_ask, svc["spec"]["clusterIP"], 53)
            assert answer in {h.name for h in hosts}
        finally:
            await proxier.stop()
            await api.delete("services", "dnsish", namespace="default")
            await api.close()

    asyncio.run(scenario())
