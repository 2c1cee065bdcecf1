"""The ``dns`` component: cluster DNS (CoreDNS's role) in the control-plane process.

How pods reach it: the server listens on ``--dns-listen`` (default 0.0.0.0:1053: port 53 of
the host usually belongs to its own resolver) and publishes the ``kube-system/kube-dns``
Service (ClusterIP ``--cluster-dns``, 10.43.0.10; ports 53/UDP ``dns``, 53/TCP ``dns-tcp``,
9153/TCP ``metrics``) without a selector, with an Endpoints object naming the address and port
it really listens on. The service proxy routes ClusterIP traffic to Endpoints like for any
other Service, so 10.43.0.10:53 from a pod lands here; kubelets point ClusterFirst pods'
resolv.conf at the ClusterIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import Any

from kybern.client import ApiClient, ApiError
from kybern.components import ConfigurationError, RunContext
from kybern.hooktypes import DnsRecord
from kybern.informers import SharedInformerFactory
from kybern.plugins.dns.records import ClusterZone
from kybern.plugins.dns.server import DnsServer, host_resolvers, parse_upstreams
from loguru import logger

log = logger.bind(component="dns")

DEFAULT_CLUSTER_DNS = "10.43.0.10"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_LISTEN = "0.0.0.0:1053"
DEFAULT_SERVICE_CIDR = "10.43.0.0/16"
USER_AGENT = "kybern-dns"
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "53"
    host = host.strip("[]") or "0.0.0.0"
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 <= number < 65536:
        raise ValueError(f"port {number} out of range")
    return host, number


def advertise_ip() -> str:
    """The address this host is reached by (the default route's), else loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


class DnsComponent:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        extra = ctx.config.extra
        #: an explicit --dns-listen must be honoured; the default may move to a free port
        self.listen_fixed = bool(extra.get("dns_listen"))
        try:
            self.host, self.port = parse_listen(str(extra.get("dns_listen") or DEFAULT_LISTEN))
            upstream = extra.get("dns_upstream")
            self.upstreams = parse_upstreams(str(upstream)) if upstream else host_resolvers()
            self.cluster_ip = str(ipaddress.IPv4Address(str(extra.get("cluster_dns") or DEFAULT_CLUSTER_DNS)))
        except ValueError as exc:
            raise ConfigurationError(f"--dns-listen/--dns-upstream/--cluster-dns: {exc}") from None
        self.domain = str(extra.get("cluster_domain") or DEFAULT_CLUSTER_DOMAIN).strip(".")
        self.service_cidr = str(extra.get("service_cidr") or DEFAULT_SERVICE_CIDR)
        self.client: ApiClient | None = None
        self.informers: SharedInformerFactory | None = None
        self.server: DnsServer | None = None

    def _plugin_records(self, qname: str, qtype: str) -> list[DnsRecord]:
        hook = self.ctx.plugins.hook.kybern_dns_records
        if not hook.get_hookimpls():
            return []
        out: list[DnsRecord] = []
        for records in hook(qname=qname, qtype=qtype):
            out.extend(records or [])
        return out

    async def start(self) -> None:
        if self.ctx.api is None:
            raise ConfigurationError("the dns component needs an API server")
        self.client = self.ctx.api(USER_AGENT)
        self.informers = informers = SharedInformerFactory(self.client)
        services = informers.informer("services")
        endpoints = informers.informer("endpoints")
        pods = informers.informer("pods")
        services.add_indexers(ClusterZone.service_indexers())
        endpoints.add_indexers(ClusterZone.endpoints_indexers())
        pods.add_indexers(ClusterZone.pod_indexers())
        zone = ClusterZone(services.store, endpoints.store, pods.store, self.domain, self.service_cidr)
        has_plugins = bool(self.ctx.plugins.hook.kybern_dns_records.get_hookimpls())
        self.server = server = DnsServer(zone, self.upstreams, self._plugin_records if has_plugins else None)
        for inf in (services, endpoints, pods):
            inf.add_event_handler(
                on_add=server.invalidate, on_update=server.invalidate, on_delete=server.invalidate
            )
        try:
            await self.server.start(self.host, self.port)
        except OSError as exc:
            if self.listen_fixed:
                reason = exc.strerror or exc
                raise ConfigurationError(
                    f"dns: cannot listen on {self.host}:{self.port}: {reason} (choose --dns-listen)"
                ) from None
            # another server on this host has the default port: any port does, since pods
            # reach us through the kube-dns Endpoints, which name the port we really got
            log.warning("dns: {}:{} is busy ({}); taking a free port", self.host, self.port, exc.strerror)
            await self._start_on_free_port()
        informers.start()
        if not await informers.wait_for_sync(timeout=30):
            log.warning("dns: caches not synced after 30s; answering from what is there")
        await self._publish_service()
        log.info(
            "cluster DNS for {} on {}:{} (Service kube-system/kube-dns {}), forwarding to {}",
            self.domain,
            self.host,
            self.port,
            self.cluster_ip,
            ", ".join(f"{h}:{p}" for h, p in self.upstreams) or "nothing",
        )

    async def _start_on_free_port(self) -> None:
        assert self.server is not None
        for _attempt in range(20):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((self.host, 0))
                port = probe.getsockname()[1]
            try:
                await self.server.start(self.host, port)
            except OSError:
                await self.server.stop()
                continue
            self.port = port
            return
        raise ConfigurationError(f"dns: no free port on {self.host} (choose --dns-listen)")

    async def _publish_service(self) -> None:
        """kube-dns Service at the cluster DNS address, Endpoints at where we listen."""
        assert self.client is not None
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": LABELS},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.cluster_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }
        try:
            await self.client.create("services", svc, "kube-system")
        except ApiError as exc:
            if not exc.already_exists:
                log.warning("dns: cannot create Service kube-system/kube-dns: {}", exc)
        host = self.host if self.host not in ("0.0.0.0", "::") else advertise_ip()
        subsets = [
            {
                "addresses": [{"ip": host}],
                "ports": [
                    {"name": "dns", "port": self.port, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": self.port, "protocol": "TCP"},
                ],
            }
        ]
        for _attempt in range(5):
            try:
                try:
                    current = await self.client.get("endpoints", "kube-dns", "kube-system")
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                    ep = {
                        "apiVersion": "v1",
                        "kind": "Endpoints",
                        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": LABELS},
                        "subsets": subsets,
                    }
                    await self.client.create("endpoints", ep, "kube-system")
                    return
                if current.get("subsets") == subsets:
                    return
                current["subsets"] = subsets
                await self.client.update("endpoints", current, "kube-system")
                return
            except ApiError as exc:
                if not (exc.conflict or exc.already_exists):
                    log.warning("dns: cannot write Endpoints kube-system/kube-dns: {}", exc)
                    return
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.informers is not None:
            await self.informers.stop()
            self.informers = None
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None


def options() -> list[Any]:
    import click

    return [
        click.Option(
            ["--dns-listen"],
            default=None,
            metavar="ADDRESS:PORT",
            help=f"Where cluster DNS listens (UDP and TCP) [default: {DEFAULT_LISTEN}]",
        ),
        click.Option(
            ["--dns-upstream"],
            default=None,
            metavar="ADDR[:PORT],...",
            help="Resolvers for names outside the cluster [default: the host's, loopback skipped]",
        ),
    ]
