"""Endpoints and EndpointSlices follow pods (real server and controller manager, pods whose
status the test writes as a kubelet would)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cluster import Server, running_server
from svchelp import client_for, get_or_none, pod_body, set_status, start_pod, until

SLICES = "endpointslices.discovery.k8s.io"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("endpoints")
    with running_server(base, "--disable", "kubelet", "--disable", "dns") as srv:
        yield srv


def service(name: str, selector: dict[str, str] | None, ports: list[dict[str, Any]], **spec: Any) -> dict:
    body: dict[str, Any] = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def addresses(ep: dict | None, field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in (ep or {}).get("subsets") or [] for a in s.get(field) or [])


async def slices_of(client: Any, ns: str, name: str) -> list[dict]:
    listing = await client.list(SLICES, ns, label_selector=f"kubernetes.io/service-name={name}")
    return listing["items"]


def test_endpoints_follow_readiness(server: Server) -> None:
    ns = "ep-ready"
    server.kubectl("create", "namespace", ns)

    async def go() -> None:
        async with client_for(server) as client:
            await client.create(
                "services",
                service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": 8080}]),
                ns,
            )
            for i in range(3):
                await start_pod(client, ns, pod_body(f"web-{i}", {"app": "web"}), f"10.42.0.{10 + i}", i != 2)
            await start_pod(client, ns, pod_body("other", {"app": "other"}), "10.42.0.99")

            async def ep() -> dict | None:
                return await get_or_none(client, "endpoints", "web", ns)

            async def settled() -> bool:
                e = await ep()
                return addresses(e) == ["10.42.0.10", "10.42.0.11"] and addresses(e, "notReadyAddresses") == [
                    "10.42.0.12"
                ]

            await until(settled, what="ready and not-ready addresses")
            e = await ep()
            assert e is not None
            subset = e["subsets"][0]
            assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
            first = subset["addresses"][0]
            assert first["targetRef"]["kind"] == "Pod" and first["targetRef"]["name"] == "web-0"
            assert first["nodeName"] == "node-a"

            # readiness flips both ways
            await set_status(client, ns, "web-2", "10.42.0.12", True)
            await set_status(client, ns, "web-0", "10.42.0.10", False)

            async def flipped() -> bool:
                e = await ep()
                return addresses(e) == ["10.42.0.11", "10.42.0.12"] and addresses(e, "notReadyAddresses") == [
                    "10.42.0.10"
                ]

            await until(flipped, what="readiness change reflected")

            # slices: same endpoints with conditions, labels and the owner
            async def slice_ok() -> list[dict] | None:
                items = await slices_of(client, ns, "web")
                eps = [e for s in items for e in s.get("endpoints") or []]
                ready = sorted(e["addresses"][0] for e in eps if e["conditions"]["ready"])
                return items if ready == ["10.42.0.11", "10.42.0.12"] and len(eps) == 3 else None

            items = await until(slice_ok, what="EndpointSlice follows readiness")
            assert len(items) == 1
            sl = items[0]
            assert sl["addressType"] == "IPv4"
            labels = sl["metadata"]["labels"]
            assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
            owner = sl["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "Service" and owner["name"] == "web" and owner["controller"] is True
            assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
            not_ready = next(e for e in sl["endpoints"] if e["addresses"] == ["10.42.0.10"])
            assert not_ready["conditions"] == {"ready": False, "serving": False, "terminating": False}
            assert not_ready["targetRef"]["name"] == "web-0" and not_ready["nodeName"] == "node-a"

            # a pod that stops matching leaves; deleting the Service removes its objects
            await client.patch("pods", "web-1", {"metadata": {"labels": {"app": "gone"}}}, namespace=ns)

            async def left() -> bool:
                return addresses(await ep()) == ["10.42.0.12"]

            await until(left, what="relabelled pod removed")
            await client.delete("services", "web", ns)

            async def cleaned() -> bool:
                return await ep() is None and not await slices_of(client, ns, "web")

            await until(cleaned, what="Endpoints and slices deleted with the Service")

    asyncio.run(go())
    out = server.kubectl("get", "endpoints", "-n", ns).stdout
    assert "web" not in out


def test_named_target_ports_and_publish_not_ready(server: Server) -> None:
    ns = "ep-named"
    server.kubectl("create", "namespace", ns)

    async def go() -> None:
        async with client_for(server) as client:
            await client.create(
                "services",
                service(
                    "api",
                    {"app": "api"},
                    [
                        {"name": "http", "port": 80, "targetPort": "web"},
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                    ],
                    publishNotReadyAddresses=True,
                ),
                ns,
            )
            await start_pod(
                client,
                ns,
                pod_body(
                    "a",
                    {"app": "api"},
                    [
                        {"name": "web", "containerPort": 8080},
                        {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
                    ],
                ),
                "10.42.1.1",
                ready=False,
            )
            await start_pod(
                client,
                ns,
                pod_body("b", {"app": "api"}, [{"name": "web", "containerPort": 9090}]),
                "10.42.1.2",
            )

            async def ep_ok() -> dict | None:
                e = await get_or_none(client, "endpoints", "api", ns)
                return e if e and addresses(e) == ["10.42.1.1", "10.42.1.2"] else None

            e = await until(ep_ok, what="both pods published (one not ready)")
            assert addresses(e, "notReadyAddresses") == []
            by_ip = {
                a["ip"]: sorted((p["name"], p["port"], p["protocol"]) for p in s["ports"])
                for s in e["subsets"]
                for a in s["addresses"]
            }
            assert by_ip["10.42.1.1"] == [("dns", 5353, "UDP"), ("http", 8080, "TCP")]
            assert by_ip["10.42.1.2"] == [("http", 9090, "TCP")]

            async def slices_ok() -> list[dict] | None:
                items = await slices_of(client, ns, "api")
                n = sum(len(s.get("endpoints") or []) for s in items)
                return items if len(items) == 2 and n == 2 else None

            items = await until(slices_ok, what="one slice per port set")
            for sl in items:
                for endpoint in sl["endpoints"]:
                    assert endpoint["conditions"]["ready"] is True  # publishNotReadyAddresses

    asyncio.run(go())


def test_slices_split_at_100_and_mirror_selectorless(server: Server) -> None:
    ns = "ep-many"
    server.kubectl("create", "namespace", ns)

    async def go() -> None:
        async with client_for(server) as client:
            await client.create("services", service("many", {"app": "many"}, [{"port": 80}]), ns)
            sem = asyncio.Semaphore(10)

            async def one(i: int) -> None:
                async with sem:
                    await start_pod(client, ns, pod_body(f"p{i}", {"app": "many"}), f"10.42.2.{i + 1}")

            await asyncio.gather(*(one(i) for i in range(130)))

            async def split() -> list[int] | None:
                sizes = sorted(len(s.get("endpoints") or []) for s in await slices_of(client, ns, "many"))
                return sizes if sum(sizes) == 130 else None

            sizes = await until(split, timeout=60, what="130 endpoints in slices")
            assert max(sizes) <= 100 and len(sizes) == 2

            # a selectorless Service: its hand-written Endpoints are mirrored
            await client.create("services", service("ext", None, [{"name": "db", "port": 5432}]), ns)
            await client.create(
                "endpoints",
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": "ext"},
                    "subsets": [
                        {"addresses": [{"ip": "192.0.2.5"}], "ports": [{"name": "db", "port": 5432}]}
                    ],
                },
                ns,
            )

            async def mirrored() -> list[dict] | None:
                items = await slices_of(client, ns, "ext")
                return items if items and items[0].get("endpoints") else None

            items = await until(mirrored, what="mirrored slice")
            sl = items[0]
            assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
                "endpointslicemirroring-controller.k8s.io"
            )
            assert sl["endpoints"][0]["addresses"] == ["192.0.2.5"]
            assert sl["ports"] == [{"name": "db", "port": 5432, "protocol": "TCP"}]
            # and the controller never rewrites the hand-written Endpoints
            ep = await client.get("endpoints", "ext", ns)
            assert addresses(ep) == ["192.0.2.5"]

    asyncio.run(go())


def test_terminating_pods_drain_in_slices(server: Server) -> None:
    """A pod being deleted leaves Endpoints at once but stays in its slice as terminating
    (serving while still Ready), which is what lets a proxy drain it."""
    ns = "ep-term"
    server.kubectl("create", "namespace", ns)

    async def go() -> None:
        async with client_for(server) as client:
            await client.create("services", service("t", {"app": "t"}, [{"port": 80}]), ns)
            await start_pod(client, ns, pod_body("t-0", {"app": "t"}), "10.42.3.1")
            await start_pod(client, ns, pod_body("t-1", {"app": "t"}), "10.42.3.2")

            async def both() -> bool:
                return addresses(await get_or_none(client, "endpoints", "t", ns)) == [
                    "10.42.3.1",
                    "10.42.3.2",
                ]

            await until(both, what="two ready endpoints")
            await client.delete("pods", "t-0", ns, grace_period_seconds=60)
            pod = await client.get("pods", "t-0", ns)
            assert pod["metadata"].get("deletionTimestamp"), "no kubelet: the pod waits out its grace period"

            async def drained() -> dict | None:
                ep = await get_or_none(client, "endpoints", "t", ns)
                if addresses(ep) != ["10.42.3.2"] or addresses(ep, "notReadyAddresses"):
                    return None
                eps = {
                    e["addresses"][0]: e["conditions"]
                    for s in await slices_of(client, ns, "t")
                    for e in s["endpoints"]
                }
                return eps if eps.get("10.42.3.1", {}).get("terminating") else None

            conditions = await until(drained, what="terminating endpoint in the slice only")
            assert conditions["10.42.3.1"] == {"ready": False, "serving": True, "terminating": True}
            assert conditions["10.42.3.2"] == {"ready": True, "serving": True, "terminating": False}

    asyncio.run(go())


def test_endpoints_cut_at_1000_addresses_ready_first() -> None:
    """kube's Endpoints capacity: 1000 addresses, ready ones first, the rest only in slices."""
    from kybern.plugins.controllers.endpoints import truncate

    ports = [{"port": 80, "protocol": "TCP"}]
    ready = [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(900)]
    waiting = [{"ip": f"10.1.0.{i}"} for i in range(200)]
    cut, truncated = truncate([{"addresses": ready, "notReadyAddresses": waiting, "ports": ports}])
    assert truncated
    assert cut == [{"ports": ports, "addresses": ready, "notReadyAddresses": waiting[:100]}]
    small = [{"addresses": ready[:3], "ports": ports}]
    assert truncate(small) == (small, False)
