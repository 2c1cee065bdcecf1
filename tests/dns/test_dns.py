"""Cluster DNS against a real server: the dns component answers from the API's Services,
Endpoints and Pods over UDP and TCP on loopback, and forwards other names to a stand-in
host resolver."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype
import pytest
from dnshelp import fake_upstream, free_udp_tcp_port, query, values
from support.cluster import Server, running_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))
from svchelp import client_for, start_pod, until

NS = "dnstest"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, dict[str, Any]]]:
    base: Path = tmp_path_factory.mktemp("dns")
    port = free_udp_tcp_port()
    with (
        fake_upstream() as upstream,
        running_server(
            base,
            "--disable",
            "kubelet",
            "--dns-listen",
            f"127.0.0.1:{port}",
            "--dns-upstream",
            f"127.0.0.1:{upstream}",
        ) as srv,
    ):
        info = asyncio.run(_populate(srv))
        yield srv, port, info


async def _populate(server: Server) -> dict[str, Any]:
    async with client_for(server) as client:
        await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        web = await client.create(
            "services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [
                        {"name": "http", "port": 8080, "targetPort": 80},
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                    ],
                },
            },
            NS,
        )
        await client.create(
            "services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "db"},
                "spec": {
                    "clusterIP": "None",
                    "selector": {"app": "db"},
                    "ports": [{"name": "pg", "port": 5432}],
                },
            },
            NS,
        )
        await client.create(
            "services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "example.org"},
            },
            NS,
        )
        await client.create(
            "services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "alias"},
                "spec": {"type": "ExternalName", "externalName": f"web.{NS}.svc.cluster.local"},
            },
            NS,
        )
        container = {"name": "c", "image": "registry.invalid/x:1"}
        for i, (ip, ready) in enumerate([("10.42.5.1", True), ("10.42.5.2", True), ("10.42.5.3", False)]):
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"db-{i}", "labels": {"app": "db"}},
                "spec": {"containers": [container], "hostname": f"db-{i}", "subdomain": "db"},
            }
            await start_pod(client, NS, body, ip, ready)
        await start_pod(
            client,
            NS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web-0", "labels": {"app": "web"}},
                "spec": {"containers": [container]},
            },
            "10.42.6.1",
        )

        async def db_ready() -> bool:
            try:
                ep = await client.get("endpoints", "db", NS)
            except Exception:
                return False
            return len([a for s in ep.get("subsets") or [] for a in s.get("addresses") or []]) == 2

        await until(db_ready, what="db endpoints")
        return {"web_ip": web["spec"]["clusterIP"]}


def _eventually(check: Any, timeout: float = 15) -> Any:
    """The DNS caches trail the API by a watch event: retry the first assertion briefly."""
    return asyncio.run(until(check, timeout=timeout, what="DNS answer"))


def test_kube_dns_service_points_at_the_listener(cluster: tuple[Server, int, dict]) -> None:
    server, port, _ = cluster
    out = server.kubectl(
        "get", "service", "kube-dns", "-n", "kube-system", "-o", "jsonpath={.spec.clusterIP}"
    )
    assert out.stdout == "10.43.0.10"
    ep = server.kubectl(
        "get",
        "endpoints",
        "kube-dns",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip} {.subsets[0].ports[*].port}",
    )
    assert ep.stdout == f"127.0.0.1 {port} {port}"


@pytest.mark.parametrize("tcp", [False, True])
def test_service_a_srv_and_aaaa(cluster: tuple[Server, int, dict], tcp: bool) -> None:
    _, port, info = cluster
    name = f"web.{NS}.svc.cluster.local"
    _eventually(lambda: values(query(port, name, tcp=tcp)) == [info["web_ip"]])
    r = query(port, name, tcp=tcp)
    assert r.answer[0].ttl == 5
    aaaa = query(port, name, "AAAA", tcp=tcp)
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
    srv = query(port, f"_http._tcp.{name}", "SRV", tcp=tcp)
    assert values(srv) == [f"0 100 8080 {name}."]
    assert values(query(port, f"_dns._udp.{name}", "SRV", tcp=tcp)) == [f"0 100 53 {name}."]
    all_srv = values(query(port, name, "SRV", tcp=tcp))
    assert all_srv == sorted([f"0 100 8080 {name}.", f"0 100 53 {name}."])
    assert query(port, f"_nope._tcp.{name}", "SRV", tcp=tcp).rcode() == dns.rcode.NXDOMAIN


def test_headless_hostnames_pods_and_ptr(cluster: tuple[Server, int, dict]) -> None:
    _, port, info = cluster
    name = f"db.{NS}.svc.cluster.local"
    _eventually(lambda: values(query(port, name)) == ["10.42.5.1", "10.42.5.2"])  # not the unready one
    assert values(query(port, f"db-1.{name}")) == ["10.42.5.2"]
    assert query(port, f"db-2.{name}").rcode() == dns.rcode.NXDOMAIN
    assert values(query(port, f"_pg._tcp.{name}", "SRV")) == [
        f"0 50 5432 db-0.{name}.",
        f"0 50 5432 db-1.{name}.",
    ]
    assert values(query(port, f"10-42-6-1.{NS}.pod.cluster.local")) == ["10.42.6.1"]
    assert query(port, f"10-42-6-9.{NS}.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    ptr = ".".join(reversed(info["web_ip"].split("."))) + ".in-addr.arpa"
    assert values(query(port, ptr, "PTR")) == [f"web.{NS}.svc.cluster.local."]
    assert values(query(port, "2.5.42.10.in-addr.arpa", "PTR")) == [f"db-1.{name}."]
    assert values(query(port, "1.6.42.10.in-addr.arpa", "PTR")) == [f"10-42-6-1.{NS}.pod.cluster.local."]
    for tcp in (False, True):  # the CNAME, and its target's address through the upstream (CoreDNS)
        external = query(port, f"ext.{NS}.svc.cluster.local", "A", tcp=tcp)
        assert values(external, "CNAME") == ["example.org."]
        assert values(external, "A") == ["192.0.2.7"]
    assert values(query(port, f"ext.{NS}.svc.cluster.local", "CNAME")) == ["example.org."]
    # an ExternalName naming a Service: the CNAME and the Service's ClusterIP, from the zone
    alias = query(port, f"alias.{NS}.svc.cluster.local", "A")
    assert values(alias, "CNAME") == [f"web.{NS}.svc.cluster.local."]
    assert values(alias, "A") == [info["web_ip"]]


@pytest.mark.parametrize("tcp", [False, True])
def test_nxdomain_and_forwarding(cluster: tuple[Server, int, dict], tcp: bool) -> None:
    _, port, _ = cluster
    missing = query(port, f"nothing.{NS}.svc.cluster.local", tcp=tcp)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority and missing.authority[0].rdtype == dns.rdatatype.SOA
    # search-path expansions of a short name are answered locally as missing
    assert query(port, f"web.{NS}.svc.cluster.local.{NS}.svc.cluster.local", tcp=tcp).rcode() == (
        dns.rcode.NXDOMAIN
    )
    external = query(port, "example.org", tcp=tcp)
    assert values(external) == ["192.0.2.7"]
    assert query(port, "unknown.example.org", tcp=tcp).rcode() == dns.rcode.NXDOMAIN
    # the kubernetes Service is in DNS too
    assert values(query(port, "kubernetes.default.svc.cluster.local", tcp=tcp)) == ["10.43.0.1"]


def test_answers_follow_changes(cluster: tuple[Server, int, dict]) -> None:
    server, port, _ = cluster
    server.kubectl("create", "service", "clusterip", "late", "-n", NS, "--tcp", "80:80")
    name = f"late.{NS}.svc.cluster.local"
    ip = server.kubectl("get", "service", "late", "-n", NS, "-o", "jsonpath={.spec.clusterIP}").stdout
    _eventually(lambda: values(query(port, name)) == [ip])
    server.kubectl("delete", "service", "late", "-n", NS)
    _eventually(lambda: query(port, name).rcode() == dns.rcode.NXDOMAIN)
