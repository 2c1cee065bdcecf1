"""Routes to other nodes' pod CIDRs (flannel's host-gw backend, in a few lines).

Each node runs its pods on a local bridge with its own /24 (Node.spec.podCIDR). For a pod on
node A to reach a pod on node B by IP, A's host needs ``B.podCIDR via B.InternalIP``; B
forwards into its bridge. That only works when the nodes share a layer-2 segment (the next
hop must be on-link), which is the same limit host-gw has. Nodes whose InternalIP is an
address of this host (several agents on one machine) need nothing: their bridges are all
local and the kernel already routes between them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Any

from loguru import logger

log = logger.bind(component="proxy")

#: routing protocol number marking kybern's routes (``ip route show proto 186``)
ROUTE_PROTO = "186"


async def _ip(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace").strip()


async def local_addresses() -> set[str]:
    code, out, _ = await _ip("-j", "-4", "addr", "show")
    if code != 0:
        return set()
    return {
        a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info") or [] if a.get("local")
    }


def node_routes(nodes: list[dict[str, Any]], own_node: str, local: set[str]) -> dict[str, str]:
    """podCIDR -> next hop for every other node that lives on another host."""
    routes: dict[str, str] = {}
    for node in nodes:
        if (node.get("metadata") or {}).get("name") == own_node:
            continue
        cidr = (node.get("spec") or {}).get("podCIDR")
        ip = next(
            (
                a.get("address")
                for a in (node.get("status") or {}).get("addresses") or []
                if a.get("type") == "InternalIP"
            ),
            None,
        )
        if not cidr or not ip or ip in local:
            continue
        try:
            ipaddress.IPv4Network(cidr)
            ipaddress.IPv4Address(ip)
        except ValueError:
            continue
        routes[cidr] = ip
    return routes


class RouteManager:
    """Keeps this host's routes equal to the wanted ``podCIDR via nodeIP`` set."""

    def __init__(self) -> None:
        self.installed: dict[str, str] = {}

    async def sync(self, wanted: dict[str, str]) -> None:
        for cidr in sorted(self.installed.keys() - wanted.keys()):
            await self._delete(cidr)
        for cidr, via in sorted(wanted.items()):
            if self.installed.get(cidr) == via:
                continue
            code, _, err = await _ip("route", "replace", cidr, "via", via, "proto", ROUTE_PROTO)
            if code != 0:
                log.warning("route {} via {} not installed: {}", cidr, via, err)
                continue
            log.info("route {} via {}", cidr, via)
            self.installed[cidr] = via

    async def _delete(self, cidr: str) -> None:
        via = self.installed.pop(cidr)
        code, _, err = await _ip("route", "delete", cidr, "via", via, "proto", ROUTE_PROTO)
        if code != 0 and "No such process" not in err:
            log.warning("route {} via {} not removed: {}", cidr, via, err)

    async def clear(self) -> None:
        for cidr in list(self.installed):
            await self._delete(cidr)


async def ensure_ip_forward() -> None:
    """Routing pods' traffic (and DNAT to pods on other nodes) needs forwarding on."""
    path = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return
        with open(path, "w") as f:
            f.write("1")
        log.info("enabled net.ipv4.ip_forward")
    except OSError as exc:
        log.warning("cannot enable net.ipv4.ip_forward: {}", exc)


async def ensure_bridge_netfilter() -> None:
    """Bridged IPv4 must pass the ip hooks (br_netfilter, bridge-nf-call-iptables=1).

    A pod that reaches a ClusterIP whose chosen endpoint sits on the same bridge is DNATed on
    the way in (routed: its packets go to the gateway), but the endpoint's reply is bridged
    straight back to the client. Without br_netfilter conntrack never sees that reply, the
    source is not translated back to the ClusterIP, and the client drops it. kube-proxy and
    k3s need the same module; the proxy loads it when it can and says so when it cannot.
    """
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return
    except FileNotFoundError:
        proc = await asyncio.create_subprocess_exec(
            "modprobe", "br_netfilter", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
    try:
        with open(path, "w") as f:
            f.write("1")
        log.info("enabled net.bridge.bridge-nf-call-iptables (br_netfilter)")
    except OSError as exc:
        log.warning(
            "br_netfilter unavailable ({}): pods reaching a service endpoint on their own node's bridge "
            "will fail unless their traffic is masqueraded",
            exc,
        )
