"""The userspace proxy: ClusterIPs on a dummy interface, sockets relaying to test endpoints."""

from __future__ import annotations

import asyncio
import collections
import secrets

import pytest
from kybern.plugins.proxy.userspace.proxier import UserspaceProxier
from support.cluster import Server

from .helpers import client_for, make_service, set_endpoints
from .nettopo import Topology, get, sh, udp_ask


@pytest.fixture
def interface() -> str:
    name = "kpts" + secrets.token_hex(3)
    yield name  # type: ignore[misc]
    sh("ip", "link", "del", name, check=False)


def _eps(proxier: UserspaceProxier, name: str) -> set[str]:
    return {ep.ip for st in proxier.applied.values() if st.port.name == name for ep in st.endpoints}


def test_userspace_clusterip_nodeport_and_endpoint_changes(
    server: Server, net: Topology, interface: str
) -> None:
    hosts = [net.add_host() for _ in range(3)]
    client = net.add_host(serve=False)

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(api, "uweb", kind="NodePort")
        cip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        url = f"http://{cip}/"
        await set_endpoints(api, "uweb", [h.ip for h in hosts])
        proxier = UserspaceProxier(client_for(server), interface=interface)
        await proxier.start()
        try:
            assert await proxier.wait_until(lambda _s: _eps(proxier, "uweb") == {h.ip for h in hosts}, 10)
            assert cip in sh("ip", "-4", "addr", "show", "dev", interface).stdout

            def count(n: int, target: str = url) -> collections.Counter[str]:
                return collections.Counter(get(target) for _ in range(n))

            seen = await asyncio.to_thread(count, 300)
            assert set(seen) == {h.name for h in hosts}, seen
            # from a "pod": its default route leads to the host, which owns the ClusterIP
            assert await asyncio.to_thread(client.fetch, url) in {h.name for h in hosts}
            # NodePort on 0.0.0.0: answers on the host's addresses
            assert await asyncio.to_thread(get, f"http://{net.gateway}:{node_port}/") in {
                h.name for h in hosts
            }
            await set_endpoints(api, "uweb", [hosts[0].ip])
            assert await proxier.wait_until(lambda _s: _eps(proxier, "uweb") == {hosts[0].ip}, 10)
            seen = await asyncio.to_thread(count, 50)
            assert set(seen) == {hosts[0].name}, seen
            await api.delete("services", "uweb", namespace="default")
            assert await proxier.wait_until(lambda _s: not _eps(proxier, "uweb"), 10)
            assert cip not in sh("ip", "-4", "addr", "show", "dev", interface).stdout
        finally:
            await proxier.stop()
            try:
                await api.delete("services", "uweb", namespace="default")
            except Exception:
                pass
            await api.close()
        assert sh("ip", "link", "show", interface, check=False).returncode != 0, "interface left behind"

    asyncio.run(scenario())


def test_userspace_udp(server: Server, net: Topology, interface: str) -> None:
    host = net.add_host(serve=False)
    host.serve_udp(5353)

    async def scenario() -> None:
        api = client_for(server)
        svc = await make_service(api, "udns", port=53, protocol="UDP", port_name="dns")
        await set_endpoints(api, "udns", [host.ip], port=5353, protocol="UDP", port_name="dns")
        proxier = UserspaceProxier(client_for(server), interface=interface, node_ports=False)
        await proxier.start()
        try:
            assert await proxier.wait_until(lambda _s: _eps(proxier, "udns") == {host.ip}, 10)
            assert await asyncio.to_thread(udp_ask, svc["spec"]["clusterIP"], 53) == host.name
        finally:
            await proxier.stop()
            await api.delete("services", "udns", namespace="default")
            await api.close()

    asyncio.run(scenario())
