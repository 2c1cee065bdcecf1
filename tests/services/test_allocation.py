"""ClusterIP and NodePort allocation through the real API server (and this plugin's store
reservations): uniqueness under concurrency, requested values, kube's refusals, restarts,
and two API servers on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kybern.client import ApiError
from sqlalchemy.engine import make_url
from support.cluster import Server, running_server
from support.pg import drop_database
from svchelp import client_for

NET = ipaddress.ip_network("10.43.0.0/16")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("alloc")
    with running_server(base, "--disable", "kubelet") as srv:
        yield srv


def svc(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def manifest(name: str, ns: str, **spec: Any) -> str:
    """A Service manifest for kubectl -f - (JSON is YAML)."""
    import json

    body = svc(name, **spec)
    body["metadata"]["namespace"] = ns
    return json.dumps(body)


def kubectl_stdin(server: Server, text: str, *args: str) -> Any:
    import subprocess

    from support.cluster import KUBECTL

    cmd = [
        KUBECTL,
        "--kubeconfig",
        str(server.kubeconfig),
        "--cache-dir",
        str(server.cache_dir),
        *args,
        "-f",
        "-",
    ]
    return subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=60)


async def create_many(server: Server, ns: str, names: list[str]) -> list[str]:
    async with client_for(server) as client:
        made = await asyncio.gather(*(client.create("services", svc(n), ns) for n in names))
    return [m["spec"]["clusterIP"] for m in made]


def test_kubernetes_service_at_first_address(server: Server) -> None:
    out = server.kubectl(
        "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port}"
    ).stdout
    assert out == "10.43.0.1 443"
    ep = server.kubectl("get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].ports[0].port}").stdout
    assert ep == str(server.port)


def test_concurrent_creates_get_unique_addresses(server: Server) -> None:
    server.kubectl("create", "namespace", "burst")
    ips = asyncio.run(create_many(server, "burst", [f"s{i}" for i in range(20)]))
    assert len(set(ips)) == 20
    for ip in ips:
        assert ipaddress.ip_address(ip) in NET
        assert ip not in ("10.43.0.0", "10.43.0.1", "10.43.0.10")


def test_requested_address_honoured_refused_and_released(server: Server) -> None:
    ns = "req"
    server.kubectl("create", "namespace", ns)
    out = kubectl_stdin(server, manifest("a", ns, clusterIP="10.43.200.7"), "create")
    assert out.returncode == 0, out.stderr
    got = server.kubectl("get", "svc", "a", "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout
    assert got == "10.43.200.7"

    taken = kubectl_stdin(server, manifest("b", ns, clusterIP="10.43.200.7"), "create")
    assert taken.returncode != 0
    assert "failed to allocate IP 10.43.200.7: provided IP is already allocated" in taken.stderr

    dns_ip = kubectl_stdin(server, manifest("d", ns, clusterIP="10.43.0.10"), "create")
    assert "failed to allocate IP 10.43.0.10: provided IP is already allocated" in dns_ip.stderr

    outside = kubectl_stdin(server, manifest("c", ns, clusterIP="10.99.0.1"), "create")
    assert outside.returncode != 0
    assert "is not in the valid range. The range of valid IPs is 10.43.0.0/16" in outside.stderr

    # headless and ExternalName get no address
    assert kubectl_stdin(server, manifest("h", ns, clusterIP="None"), "create").returncode == 0
    assert server.kubectl("get", "svc", "h", "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout == "None"
    ext = svc("x", type="ExternalName", externalName="example.org")
    ext["spec"].pop("ports")

    async def make_ext() -> dict:
        async with client_for(server) as client:
            return await client.create("services", ext, ns)

    assert not asyncio.run(make_ext())["spec"].get("clusterIP")

    # an update that omits the address keeps it
    async def update_without_ip() -> str:
        async with client_for(server) as client:
            cur = await client.get("services", "a", ns)
            cur["spec"].pop("clusterIP", None)
            cur["spec"].pop("clusterIPs", None)
            cur["metadata"].setdefault("labels", {})["touched"] = "yes"
            return (await client.update("services", cur, ns))["spec"]["clusterIP"]

    assert asyncio.run(update_without_ip()) == "10.43.200.7"


def test_node_ports(server: Server) -> None:
    ns = "np"
    server.kubectl("create", "namespace", ns)
    server.kubectl("create", "service", "nodeport", "auto", "-n", ns, "--tcp", "80:8080")
    port = int(
        server.kubectl("get", "svc", "auto", "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}").stdout
    )
    assert 30000 <= port <= 32767
    fixed = manifest("fixed", ns, type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert kubectl_stdin(server, fixed, "create").returncode == 0
    clash = kubectl_stdin(
        server, manifest("clash", ns, type="NodePort", ports=[{"port": 81, "nodePort": 30080}]), "create"
    )
    assert clash.returncode != 0
    assert "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated" in clash.stderr
    far = kubectl_stdin(
        server, manifest("far", ns, type="NodePort", ports=[{"port": 80, "nodePort": 40000}]), "create"
    )
    assert far.returncode != 0 and "provided port is not in the valid range" in far.stderr


def test_addresses_survive_a_restart(tmp_path: Path) -> None:
    fixed = manifest(
        "fixed", "keep", type="NodePort", clusterIP="10.43.200.8", ports=[{"port": 80, "nodePort": 30081}]
    )
    with running_server(tmp_path, "--disable", "kubelet", "--disable", "dns") as first:
        first.kubectl("create", "namespace", "keep")
        before = asyncio.run(create_many(first, "keep", [f"k{i}" for i in range(15)]))
        assert kubectl_stdin(first, fixed, "create").returncode == 0
        first.kubectl("delete", "svc", "fixed", "-n", "keep")
    with running_server(tmp_path, "--disable", "kubelet", "--disable", "dns") as second:

        async def read() -> list[str]:
            async with client_for(second) as client:
                items = (await client.list("services", "keep"))["items"]
            return [
                s["spec"]["clusterIP"] for s in sorted(items, key=lambda s: int(s["metadata"]["name"][1:]))
            ]

        assert asyncio.run(read()) == before
        # the deleted Service's address and port were released: another may take them
        again = kubectl_stdin(second, fixed.replace('"fixed"', '"again"'), "create")
        assert again.returncode == 0, again.stderr
        after = asyncio.run(create_many(second, "keep", [f"n{i}" for i in range(15)]))
        assert not set(after) & set(before)
        assert len(set(after)) == 15


@pytest.fixture
def pg_url() -> Iterator[str]:
    admin = os.environ.get("KYBERN_TEST_PG_URL")
    if not admin:
        pytest.skip("KYBERN_TEST_PG_URL is not set")
    libpq = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kybern_svc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(libpq, name)


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_two_api_servers_never_share_a_value(tmp_path: Path, pg_url: str) -> None:
    """The same requested address and port sent to both servers at once: one wins each time."""
    args = ("--datastore-endpoint", pg_url, "--disable", "kubelet", "--disable", "dns")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", *args) as a, running_server(tmp_path / "b", *args) as b:

        async def race(i: int) -> list[bool]:
            async with client_for(a) as ca, client_for(b) as cb:

                async def one(client: Any, name: str) -> bool:
                    body = svc(
                        name,
                        type="NodePort",
                        clusterIP=f"10.43.77.{i}",
                        ports=[{"port": 80, "nodePort": 31000 + i}],
                    )
                    try:
                        await client.create("services", body, "default")
                        return True
                    except ApiError as exc:
                        assert exc.status.get("code") == 422, exc.status
                        return False

                return list(await asyncio.gather(one(ca, f"ra{i}"), one(cb, f"rb{i}")))

        for i in range(1, 9):
            assert sorted(asyncio.run(race(i))) == [False, True], f"round {i}"

        async def spread() -> list[str]:
            async with client_for(a) as ca, client_for(b) as cb:
                made = await asyncio.gather(
                    *(c.create("services", svc(f"m{i}"), "default") for i, c in enumerate([ca, cb] * 10))
                )
            return [m["spec"]["clusterIP"] for m in made]

        ips = asyncio.run(spread())
        assert len(set(ips)) == 20
