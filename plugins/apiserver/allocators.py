"""ClusterIP and NodePort allocation for Services, as kube-apiserver's service registry does.

Allocation happens in the API server because only it sees every Service write: a create with
no ``spec.clusterIP`` gets a free address of the service CIDR (``--service-cidr``, k3s'
10.43.0.0/16; the first address belongs to ``default/kubernetes``), NodePort and LoadBalancer
ports without ``nodePort`` get a free port of ``--service-node-port-range`` (30000-32767), and
an update that omits them keeps the allocated values. Addresses in use are read from the watch
cache, plus the ones handed out moments ago that the cache has not seen yet.
"""

from __future__ import annotations

import ipaddress
import random
import time
from typing import Any

from kybern.plugins.apiserver import errors
from kybern.resources import FieldError

DEFAULT_SERVICE_CIDR = "10.43.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
#: a just-allocated value stays reserved this long even before the cache shows its Service
PENDING_SECONDS = 30.0


def parse_port_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    first, last = int(lo), int(hi or lo)
    if not (0 < first <= last < 65536):
        raise ValueError(f"invalid port range {text!r}")
    return first, last


class ServiceAllocator:
    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR, node_ports: str = DEFAULT_NODE_PORT_RANGE) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.node_ports = parse_port_range(node_ports)
        self._pending_ips: dict[str, float] = {}
        self._pending_ports: dict[int, float] = {}
        self._rng = random.Random()

    @property
    def kubernetes_ip(self) -> str:
        """The first address of the range: the ``default/kubernetes`` Service's."""
        return str(self.network.network_address + 1)

    def _expire(self) -> None:
        now = time.monotonic()
        for pending in (self._pending_ips, self._pending_ports):
            for k in [k for k, t in pending.items() if now - t > PENDING_SECONDS]:
                del pending[k]

    @staticmethod
    def _in_use(
        services: list[dict[str, Any]], skip_key: tuple[str, str] | None
    ) -> tuple[set[str], set[int]]:
        ips: set[str] = set()
        ports: set[int] = set()
        for svc in services:
            meta = svc.get("metadata") or {}
            if skip_key and (meta.get("namespace"), meta.get("name")) == skip_key:
                continue
            spec = svc.get("spec") or {}
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                if ip and ip != "None":
                    ips.add(ip)
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    ports.add(int(p["nodePort"]))
        return ips, ports

    def _free_ip(self, used: set[str]) -> str:
        size = self.network.num_addresses
        first = int(self.network.network_address) + 2  # .0 is the network, .1 is kubernetes
        last = int(self.network.broadcast_address) - 1
        if last < first:
            raise errors.ApiStatusError(500, "InternalError", "the service CIDR has no room for services")
        taken = used | set(self._pending_ips)
        for _ in range(min(size, 64)):
            candidate = str(ipaddress.ip_address(self._rng.randint(first, last)))
            if candidate not in taken:
                return candidate
        for n in range(first, last + 1):
            candidate = str(ipaddress.ip_address(n))
            if candidate not in taken:
                return candidate
        raise errors.ApiStatusError(
            500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full"
        )

    def _free_port(self, used: set[int]) -> int:
        lo, hi = self.node_ports
        taken = used | set(self._pending_ports)
        for _ in range(64):
            candidate = self._rng.randint(lo, hi)
            if candidate not in taken:
                return candidate
        for candidate in range(lo, hi + 1):
            if candidate not in taken:
                return candidate
        raise errors.ApiStatusError(
            500, "InternalError", "Internal error occurred: failed to allocate a nodePort: range is full"
        )

    def allocate(
        self,
        rt: Any,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        services: list[dict[str, Any]],
    ) -> None:
        """Fill clusterIP(s) and nodePorts of ``obj`` in place (create, or update from ``old``)."""
        self._expire()
        meta = obj.get("metadata") or {}
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        old_spec = (old or {}).get("spec") or {}
        kind = spec.get("type") or "ClusterIP"
        used_ips, used_ports = self._in_use(services, (meta.get("namespace"), meta.get("name")))
        name = meta.get("name") or ""
        if kind == "ExternalName":
            if old is not None:
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
        else:
            ip = spec.get("clusterIP")
            if not ip and old_spec.get("clusterIP") and old_spec.get("clusterIP") != "None":
                ip = spec["clusterIP"] = old_spec["clusterIP"]
                spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [ip])
            if not ip:
                ip = self._free_ip(used_ips)
                self._pending_ips[ip] = time.monotonic()
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            elif ip != "None" and ip != old_spec.get("clusterIP"):
                self._claim_ip(rt, name, ip, used_ips)
                spec.setdefault("clusterIPs", [ip])
            if ip != "None":
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        wants_node_ports = kind in ("NodePort", "LoadBalancer")
        old_ports = {
            (p.get("port"), p.get("protocol") or "TCP"): p.get("nodePort")
            for p in old_spec.get("ports") or []
        }
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict):
                continue
            if not wants_node_ports:
                continue
            node_port = port.get("nodePort")
            previous = old_ports.get((port.get("port"), port.get("protocol") or "TCP"))
            if not node_port and previous:
                port["nodePort"] = previous
            elif not node_port:
                port["nodePort"] = self._free_port(used_ports)
                self._pending_ports[port["nodePort"]] = time.monotonic()
            elif node_port != previous:
                self._claim_port(rt, name, i, int(node_port), used_ports)
            used_ports.add(int(port["nodePort"]))

    def _claim_ip(self, rt: Any, name: str, ip: str, used: set[str]) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return  # the kind's validation words the error
        if addr not in self.network:
            raise errors.invalid(
                rt,
                name,
                [
                    FieldError(
                        "FieldValueInvalid",
                        "spec.clusterIPs",
                        f"failed to allocate IP {ip}: the provided IP ({ip}) "
                        f"is not in the valid range. The range of valid IPs is {self.network}",
                        [ip],
                    )
                ],
            )
        if ip in used or ip in self._pending_ips:
            raise errors.invalid(
                rt,
                name,
                [
                    FieldError(
                        "FieldValueInvalid",
                        "spec.clusterIPs",
                        f"failed to allocate IP {ip}: provided IP is already allocated",
                        [ip],
                    )
                ],
            )
        self._pending_ips[ip] = time.monotonic()

    def _claim_port(self, rt: Any, name: str, index: int, port: int, used: set[int]) -> None:
        lo, hi = self.node_ports
        path = f"spec.ports[{index}].nodePort"
        if not lo <= port <= hi:
            raise errors.invalid(
                rt,
                name,
                [
                    FieldError(
                        "FieldValueInvalid",
                        path,
                        f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}",
                        port,
                    )
                ],
            )
        if port in used or port in self._pending_ports:
            raise errors.invalid(
                rt, name, [FieldError("FieldValueInvalid", path, "provided port is already allocated", port)]
            )
        self._pending_ports[port] = time.monotonic()
