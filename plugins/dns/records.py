"""The cluster zone's answers, computed from informer caches the way CoreDNS's kubernetes
plugin does.

Names (``cluster.local`` is the configurable domain):

- ``svc.ns.svc.cluster.local``: A = the ClusterIP; for a headless Service the ready
  addresses of its Endpoints; an ExternalName Service answers a CNAME.
- ``_port._proto.svc.ns.svc.cluster.local`` and ``svc.ns.svc.cluster.local`` SRV: the named
  ports (per endpoint for headless Services, whose targets are ``host.svc.ns.svc...``).
- ``host.svc.ns.svc.cluster.local``: one endpoint of a headless Service, ``host`` being the
  pod's hostname (hostname+subdomain) or its address with dashes.
- ``a-b-c-d.ns.pod.cluster.local``: a pod with that address in that namespace.
- PTR for ClusterIPs, headless endpoints and pod addresses.

Everything is synchronous and reads only caches: a query costs a few dict lookups, which is
what keeps the ndots:5 search-path storm of every pod cheap.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from kybern.hooktypes import DnsRecord

Obj = dict[str, Any]

TTL = 5


@dataclass
class Answer:
    """What the cluster zone says about one question."""

    #: "NOERROR" (answers, or none: NODATA) or "NXDOMAIN"
    rcode: str = "NOERROR"
    records: list[DnsRecord] = field(default_factory=list)
    additional: list[DnsRecord] = field(default_factory=list)


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def reverse_to_ip(qname: str) -> str | None:
    """``4.3.2.1.in-addr.arpa`` -> ``1.2.3.4`` (None for anything else or a partial name)."""
    suffix = ".in-addr.arpa"
    if not qname.endswith(suffix):
        return None
    parts = qname[: -len(suffix)].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


class ClusterZone:
    """Answers for the cluster domain from three caches (objects keyed ``ns/name``).

    ``services``, ``endpoints`` and ``pods`` are ``kybern.informers.Indexer``-like: ``get``,
    ``list(namespace)`` and ``by_index`` with the indexes :meth:`indexers` names.
    """

    def __init__(
        self, services: Any, endpoints: Any, pods: Any, domain: str = "cluster.local", service_cidr: str = ""
    ) -> None:
        self.services = services
        self.endpoints = endpoints
        self.pods = pods
        self.domain = domain.strip(".").lower()
        self.service_net = ipaddress.ip_network(service_cidr, strict=False) if service_cidr else None

    # --- indexes the caches need ----------------------------------------------------------------

    @staticmethod
    def service_indexers() -> dict[str, Any]:
        def by_ip(svc: Obj) -> list[str]:
            spec = svc.get("spec") or {}
            ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
            return [ip for ip in ips if ip and ip != "None"]

        return {"clusterIP": by_ip}

    @staticmethod
    def endpoints_indexers() -> dict[str, Any]:
        def by_ip(ep: Obj) -> list[str]:
            return [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [] if a.get("ip")]

        return {"ip": by_ip}

    @staticmethod
    def pod_indexers() -> dict[str, Any]:
        def by_ip(pod: Obj) -> list[str]:
            status = pod.get("status") or {}
            ips = {status.get("podIP")} | {i.get("ip") for i in status.get("podIPs") or []}
            return [ip for ip in ips if ip]

        return {"podIP": by_ip}

    # --- names ------------------------------------------------------------------------------------

    def is_ours(self, qname: str) -> bool:
        """Whether the zone answers ``qname`` (lowercase, no trailing dot) itself."""
        if qname == self.domain or qname.endswith("." + self.domain):
            return True
        ip = reverse_to_ip(qname)
        if ip is None:
            return False
        if self.service_net is not None and ipaddress.ip_address(ip) in self.service_net:
            return True
        return bool(self.pods.by_index("podIP", ip) or self.endpoints.by_index("ip", ip))

    def service_fqdn(self, svc: Obj) -> str:
        return f"{_meta(svc).get('name')}.{_meta(svc).get('namespace')}.svc.{self.domain}"

    def lookup(self, qname: str, qtype: str) -> Answer:
        """The answer for a name :meth:`is_ours` accepted."""
        ip = reverse_to_ip(qname)
        if ip is not None:
            return self._ptr(qname, ip, qtype)
        rel = qname[: -len(self.domain)].rstrip(".")
        labels = rel.split(".") if rel else []
        if not labels:
            return Answer()  # the apex exists (SOA/NS are added by the server)
        if labels[-1] == "svc":
            return self._svc(qname, labels[:-1], qtype)
        if labels[-1] == "pod":
            return self._pod(qname, labels[:-1], qtype)
        return Answer("NXDOMAIN")

    # --- services -------------------------------------------------------------------------------

    def _ready_addresses(self, svc: Obj) -> list[tuple[Obj, list[Obj]]]:
        """(address, ports) of a Service's ready endpoints."""
        ep = self.endpoints.get(f"{_meta(svc).get('namespace')}/{_meta(svc).get('name')}")
        out: list[tuple[Obj, list[Obj]]] = []
        for subset in (ep or {}).get("subsets") or []:
            for address in subset.get("addresses") or []:
                if address.get("ip"):
                    out.append((address, subset.get("ports") or []))
        return out

    def _svc(self, qname: str, labels: list[str], qtype: str) -> Answer:
        if len(labels) == 0:
            return Answer()
        if len(labels) == 1:  # a namespace: exists while it holds a Service
            return Answer() if self.services.list(labels[0]) else Answer("NXDOMAIN")
        ns = labels[-1]
        svc = self.services.get(f"{ns}/{labels[-2]}")
        if svc is None:
            return Answer("NXDOMAIN")
        spec = svc.get("spec") or {}
        if len(labels) == 2:
            return self._service_name(qname, svc, spec, qtype)
        if len(labels) == 3:
            return self._endpoint_name(qname, svc, labels[0], qtype)
        if len(labels) == 4 and labels[0].startswith("_") and labels[1].startswith("_"):
            return self._port_srv(qname, svc, spec, labels[0][1:], labels[1][1:], qtype)
        return Answer("NXDOMAIN")

    def _service_name(self, qname: str, svc: Obj, spec: Obj, qtype: str) -> Answer:
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").rstrip(".")
            return Answer(records=[DnsRecord(qname, "CNAME", target + ".", TTL)]) if target else Answer()
        headless = spec.get("clusterIP") in ("None", None, "")
        answer = Answer()
        if qtype in ("A", "ANY"):
            if headless:
                ips = sorted({a["ip"] for a, _ in self._ready_addresses(svc) if ":" not in a["ip"]})
            else:
                ips = [i for i in spec.get("clusterIPs") or [spec["clusterIP"]] if ":" not in i]
            answer.records += [DnsRecord(qname, "A", ip, TTL) for ip in ips]
        if qtype in ("SRV", "ANY"):
            for port in spec.get("ports") or []:
                if port.get("name"):
                    answer = self._merge(answer, self._port_srv(qname, svc, spec, port["name"], None, "SRV"))
        return answer

    def _port_srv(
        self, qname: str, svc: Obj, spec: Obj, port_name: str, proto: str | None, qtype: str
    ) -> Answer:
        ports = [
            p
            for p in spec.get("ports") or []
            if p.get("name") == port_name and (proto is None or (p.get("protocol") or "TCP").lower() == proto)
        ]
        if not ports:
            return Answer("NXDOMAIN")
        if qtype not in ("SRV", "ANY"):
            return Answer()
        fqdn = self.service_fqdn(svc)
        answer = Answer()
        if spec.get("clusterIP") not in ("None", None, ""):
            for p in ports:
                answer.records.append(DnsRecord(qname, "SRV", fqdn + ".", TTL, 0, 100, int(p["port"])))
            answer.additional += [DnsRecord(fqdn, "A", spec["clusterIP"], TTL)]
            return answer
        addresses = self._ready_addresses(svc)
        weight = max(1, 100 // max(1, len(addresses)))
        for address, ep_ports in addresses:
            host = address.get("hostname") or dashed(address["ip"])
            target = f"{host}.{fqdn}"
            for ep_port in ep_ports:
                if ep_port.get("name") == port_name and (
                    proto is None or (ep_port.get("protocol") or "TCP").lower() == proto
                ):
                    answer.records.append(
                        DnsRecord(qname, "SRV", target + ".", TTL, 0, weight, int(ep_port["port"]))
                    )
                    answer.additional.append(DnsRecord(target, "A", address["ip"], TTL))
        return answer

    def _endpoint_name(self, qname: str, svc: Obj, host: str, qtype: str) -> Answer:
        ips = sorted(
            {
                a["ip"]
                for a, _ in self._ready_addresses(svc)
                if a.get("hostname") == host or dashed(a["ip"]) == host
            }
        )
        if not ips:
            return Answer("NXDOMAIN")
        if qtype not in ("A", "ANY"):
            return Answer()
        return Answer(records=[DnsRecord(qname, "A", ip, TTL) for ip in ips if ":" not in ip])

    # --- pods and reverse -------------------------------------------------------------------------

    def _pod(self, qname: str, labels: list[str], qtype: str) -> Answer:
        if len(labels) != 2:
            return Answer("NXDOMAIN") if len(labels) > 2 else Answer()
        ip = labels[0].replace("-", ".")
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            return Answer("NXDOMAIN")
        pods = [p for p in self.pods.by_index("podIP", ip) if _meta(p).get("namespace") == labels[1]]
        if not pods:
            return Answer("NXDOMAIN")
        if qtype not in ("A", "ANY"):
            return Answer()
        return Answer(records=[DnsRecord(qname, "A", ip, TTL)])

    def _ptr(self, qname: str, ip: str, qtype: str) -> Answer:
        names: list[str] = []
        for svc in self.services.by_index("clusterIP", ip):
            names.append(self.service_fqdn(svc))
        for ep in self.endpoints.by_index("ip", ip):
            svc = self.services.get(f"{_meta(ep).get('namespace')}/{_meta(ep).get('name')}")
            if svc is None or (svc.get("spec") or {}).get("clusterIP") not in ("None", None, ""):
                continue
            for subset in ep.get("subsets") or []:
                for address in subset.get("addresses") or []:
                    if address.get("ip") == ip:
                        names.append(f"{address.get('hostname') or dashed(ip)}.{self.service_fqdn(svc)}")
        if not names:
            for pod in self.pods.by_index("podIP", ip):
                names.append(f"{dashed(ip)}.{_meta(pod).get('namespace')}.pod.{self.domain}")
        if not names:
            return Answer("NXDOMAIN")
        if qtype not in ("PTR", "ANY"):
            return Answer()
        return Answer(records=[DnsRecord(qname, "PTR", n + ".", TTL) for n in sorted(set(names))])

    @staticmethod
    def _merge(a: Answer, b: Answer) -> Answer:
        a.records += b.records
        a.additional += b.additional
        return a
