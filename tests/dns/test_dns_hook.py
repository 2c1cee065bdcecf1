"""The ``kybern_dns_records`` hook: a plugin's answers come first, over the real wire.

The zone reads real informer caches (``kybern.informers.Indexer``) filled by hand here, so
no API server is needed to see the hook and the cache interplay."""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.message
import dns.rcode
from dnshelp import free_udp_tcp_port
from kybern import hookimpl
from kybern.hooktypes import DnsRecord
from kybern.informers import NAMESPACE_INDEX, Indexer, index_by_namespace
from kybern.pluginmanager import new_manager
from kybern.plugins.dns.records import ClusterZone
from kybern.plugins.dns.server import DnsServer


class Greeter:
    """A plugin answering one name outside the cluster zone and one inside it."""

    @hookimpl
    def kybern_dns_records(self, qname: str, qtype: str) -> list[DnsRecord] | None:
        if qname == "hello.kybern.test" and qtype == "A":
            return [DnsRecord(qname, "A", "192.0.2.44")]
        if qname == "override.default.svc.cluster.local" and qtype == "TXT":
            return [DnsRecord(qname, "TXT", "from a plugin", ttl=30)]
        return None


def _indexer(extra: dict) -> Indexer:
    return Indexer({NAMESPACE_INDEX: index_by_namespace, **extra})


def test_plugin_answers_and_cache_invalidation() -> None:
    pm = new_manager()
    pm.register(Greeter(), "greeter")

    def plugin_records(qname: str, qtype: str) -> list[DnsRecord]:
        return [r for batch in pm.hook.kybern_dns_records(qname=qname, qtype=qtype) for r in batch or []]

    services = _indexer(ClusterZone.service_indexers())
    endpoints = _indexer(ClusterZone.endpoints_indexers())
    pods = _indexer(ClusterZone.pod_indexers())
    zone = ClusterZone(services, endpoints, pods, service_cidr="10.43.0.0/16")

    async def go() -> None:
        port = free_udp_tcp_port()
        with_hook = DnsServer(zone, [], plugin_records)
        await with_hook.start("127.0.0.1", port)
        try:
            r = await dns.asyncquery.udp(
                dns.message.make_query("hello.kybern.test", "A"), "127.0.0.1", port=port
            )
            assert [rd.to_text() for rrset in r.answer for rd in rrset] == ["192.0.2.44"]
            txt = await dns.asyncquery.tcp(
                dns.message.make_query("override.default.svc.cluster.local", "TXT"), "127.0.0.1", port=port
            )
            assert txt.answer[0].ttl == 30 and txt.answer[0][0].to_text() == '"from a plugin"'
            # no upstream configured: other names fail rather than hang
            other = await dns.asyncquery.udp(
                dns.message.make_query("other.test", "A"), "127.0.0.1", port=port
            )
            assert other.rcode() == dns.rcode.SERVFAIL
        finally:
            await with_hook.stop()

        # without plugins, answers are cached until a cache event invalidates them
        plain = DnsServer(zone, [], None)
        await plain.start("127.0.0.1", port)
        try:
            name = "web.default.svc.cluster.local"
            q = dns.message.make_query(name, "A")
            first = await dns.asyncquery.udp(q, "127.0.0.1", port=port)
            assert first.rcode() == dns.rcode.NXDOMAIN
            services.put(
                {
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"clusterIP": "10.43.5.5", "clusterIPs": ["10.43.5.5"], "ports": [{"port": 80}]},
                }
            )
            plain.invalidate()  # what the component's informer handlers do on every event
            second = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port)
            assert [rd.to_text() for rrset in second.answer for rd in rrset] == ["10.43.5.5"]
            ptr = await dns.asyncquery.udp(
                dns.message.make_query("5.5.43.10.in-addr.arpa", "PTR"), "127.0.0.1", port=port
            )
            assert ptr.answer[0][0].to_text() == f"{name}."
            # an address of the service range nobody holds: authoritative NXDOMAIN, not forwarded
            miss = await dns.asyncquery.udp(
                dns.message.make_query("9.9.43.10.in-addr.arpa", "PTR"), "127.0.0.1", port=port
            )
            assert miss.rcode() == dns.rcode.NXDOMAIN
        finally:
            await plain.stop()

    asyncio.run(go())


def test_wildcard_listener_answers_from_the_address_asked() -> None:
    """On 0.0.0.0 a reply must leave from the address the query went to: pods ask the node IP
    (behind the kube-dns ClusterIP) and drop answers from the bridge address the route would
    pick. Asking 127.0.0.2 from 127.0.0.1 shows it: dnspython rejects a reply from elsewhere."""
    zone = ClusterZone(
        _indexer(ClusterZone.service_indexers()),
        _indexer(ClusterZone.endpoints_indexers()),
        _indexer(ClusterZone.pod_indexers()),
        service_cidr="10.43.0.0/16",
    )

    async def go() -> None:
        port = free_udp_tcp_port()
        server = DnsServer(zone, [], None)
        await server.start("0.0.0.0", port)
        try:
            query = dns.message.make_query("web.default.svc.cluster.local", "A")
            reply = await dns.asyncquery.udp(query, "127.0.0.2", port=port, source="127.0.0.1", timeout=3)
            assert reply.rcode() == dns.rcode.NXDOMAIN
        finally:
            await server.stop()

    asyncio.run(go())
