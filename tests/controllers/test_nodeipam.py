"""Node IPAM: every node gets a distinct /24 of --cluster-cidr, a podCIDR a kubelet set is
kept, and allocations survive a restart of the control plane."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from conftest import client_for, run, wait_for
from support.cluster import Server, running_server
from support_nodes import CONTROL_PLANE, list_items, node_manifest

pytestmark = pytest.mark.timeout(180)

ARGS = (*CONTROL_PLANE, "--cluster-cidr", "10.99.0.0/16")


def create_nodes(server: Server, *names: str, cidr: str | None = None) -> None:
    async def go() -> None:
        async with client_for(server) as client:
            for name in names:
                body = node_manifest(name)
                if cidr:
                    body["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
                await client.create("nodes", body)

    run(go())


def cidrs(server: Server) -> dict[str, str]:
    return {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in list_items(server, "nodes")}


def all_assigned(server: Server, count: int) -> dict[str, str] | None:
    found = cidrs(server)
    return found if len(found) == count and all(found.values()) else None


def test_unique_cidrs_kept_across_restarts(tmp_path: Path) -> None:
    with running_server(tmp_path, *ARGS) as server:
        create_nodes(server, "kubelet-chose", cidr="10.99.0.0/24")  # the kubelet was first
        create_nodes(server, "n1", "n2", "n3")
        first = wait_for(lambda: all_assigned(server, 4), what="4 nodes with podCIDRs")
        assert first["kubelet-chose"] == "10.99.0.0/24"
        node = list_items(server, "nodes")[0]
        assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    with running_server(tmp_path, *ARGS) as server:
        create_nodes(server, "n4", "n5")
        after = wait_for(lambda: all_assigned(server, 6), what="6 nodes with podCIDRs")
    assert {k: after[k] for k in first} == first  # nothing moved
    assert len(set(after.values())) == 6  # nothing repeated
    cluster = ipaddress.ip_network("10.99.0.0/16")
    for cidr in after.values():
        net = ipaddress.ip_network(cidr)
        assert net.prefixlen == 24 and net.subnet_of(cluster)
