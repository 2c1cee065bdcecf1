"""What the proxy serves, reduced from Services and EndpointSlices to plain values.

The rule renderer and the diff work on these frozen values only, so "did this service port
change?" is a plain equality test and the API's wire format stays out of nftables code.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

#: the label an EndpointSlice names its Service with
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: kube's default ClientIP affinity timeout (3 hours)
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service: the unit that gets a chain (kube's ServicePortName)."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # lower case: tcp, udp, sctp
    port: int
    cluster_ips: tuple[str, ...]
    node_port: int | None = None
    #: ClientIP affinity timeout in seconds, None without affinity
    affinity_timeout: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port_name}/{self.protocol}"


@dataclass(frozen=True)
class ServiceState:
    """A service port with the endpoints it balances over (sorted, ready ones only)."""

    port: ServicePort
    endpoints: tuple[Endpoint, ...]


def _ipv4(address: str | None) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address or ""), ipaddress.IPv4Address)
    except ValueError:
        return False


def service_ports(service: Obj) -> list[ServicePort]:
    """The ports the proxy must program for a Service (none for headless/ExternalName ones)."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        return []
    ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if _ipv4(ip)]
    with_node_ports = kind in ("NodePort", "LoadBalancer")
    if not ips and not with_node_ports:
        return []
    timeout: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        timeout = int(cfg) if cfg else DEFAULT_AFFINITY_TIMEOUT
    result = []
    for port in spec.get("ports") or []:
        if not port.get("port"):
            continue
        result.append(
            ServicePort(
                namespace=meta.get("namespace") or "default",
                name=meta.get("name") or "",
                port_name=port.get("name") or "",
                protocol=(port.get("protocol") or "TCP").lower(),
                port=int(port["port"]),
                cluster_ips=tuple(ips),
                node_port=int(port["nodePort"]) if with_node_ports and port.get("nodePort") else None,
                affinity_timeout=timeout,
            )
        )
    return result


def endpoints_from_slices(port: ServicePort, slices: list[Obj]) -> tuple[Endpoint, ...]:
    """Ready IPv4 endpoints of the slices for ``port`` (matched by port name and protocol)."""
    found: set[Endpoint] = set()
    for eps in slices:
        if eps.get("addressType", "IPv4") != "IPv4":
            continue
        target = None
        for p in eps.get("ports") or []:
            if (p.get("name") or "") == port.port_name and (
                p.get("protocol") or "TCP"
            ).lower() == port.protocol:
                target = p.get("port")
        if not target:
            continue
        for ep in eps.get("endpoints") or []:
            # kube treats an unset ready condition as ready
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for address in ep.get("addresses") or []:
                if _ipv4(address):
                    found.add(Endpoint(address, int(target)))
    return tuple(sorted(found))


def endpoints_from_endpoints(port: ServicePort, endpoints: Obj | None) -> tuple[Endpoint, ...]:
    """The same from a core/v1 Endpoints object (``addresses`` are the ready ones)."""
    found: set[Endpoint] = set()
    for subset in (endpoints or {}).get("subsets") or []:
        target = None
        for p in subset.get("ports") or []:
            if (p.get("name") or "") == port.port_name and (
                p.get("protocol") or "TCP"
            ).lower() == port.protocol:
                target = p.get("port")
        if not target:
            continue
        for address in subset.get("addresses") or []:
            if _ipv4(address.get("ip")):
                found.add(Endpoint(address["ip"], int(target)))
    return tuple(sorted(found))


def desired_state(
    services: list[Obj], slices_by_service: dict[str, list[Obj]], endpoints_by_service: dict[str, Obj]
) -> dict[str, ServiceState]:
    """Every service port with its endpoints: from EndpointSlices when the Service has any,
    else from its Endpoints object (clusters without the EndpointSlice controller)."""
    state: dict[str, ServiceState] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        skey = f"{meta.get('namespace')}/{meta.get('name')}"
        slices = slices_by_service.get(skey)
        for port in service_ports(svc):
            eps = (
                endpoints_from_slices(port, slices)
                if slices
                else endpoints_from_endpoints(port, endpoints_by_service.get(skey))
            )
            state[port.key] = ServiceState(port, eps)
    return state


def state_from_objects(
    services: list[Obj], slices: list[Obj], endpoints: list[Obj]
) -> dict[str, ServiceState]:
    """:func:`desired_state` from the informers' flat lists (what both proxies hold): slices
    grouped by their service-name label, Endpoints by their own name."""
    slices_by_service: dict[str, list[Obj]] = {}
    for eps in slices:
        meta = eps.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            slices_by_service.setdefault(f"{meta.get('namespace')}/{svc}", []).append(eps)
    endpoints_by_service = {
        f"{(e.get('metadata') or {}).get('namespace')}/{(e.get('metadata') or {}).get('name')}": e
        for e in endpoints
    }
    return desired_state(services, slices_by_service, endpoints_by_service)
