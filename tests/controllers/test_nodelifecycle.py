"""Node lifecycle with a short grace period: a node whose Lease stops being renewed turns
Ready=Unknown and gets the unreachable taints, its pods are evicted after the (short)
--pod-eviction-timeout and their ReplicaSet recreates them on the healthy node; the node
recovers when its kubelet comes back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import client_for, create_namespace, kubectl_json, mark_pods_ready, run, wait_for
from support.cluster import Server, running_server
from support_nodes import (
    CONTROL_PLANE,
    apply_obj,
    list_items,
    live,
    register_node,
    renew_lease,
    set_node_ready,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("nodelifecycle")
    args = (
        *CONTROL_PLANE,
        "--node-monitor-grace-period",
        "3s",
        "--pod-eviction-timeout",
        "2s",
        "--pod-gc-period",
        "1s",
    )
    with running_server(base, *args) as srv:
        yield srv


class Heartbeats:
    """Renews the Leases of the named nodes every half second, like their kubelets would."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.nodes: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with client_for(self.server) as client:
            while not self._stop.is_set():
                for name in list(self.nodes):
                    await renew_lease(client, name)
                await asyncio.sleep(0.5)

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def node(server: Server, name: str) -> dict:
    return kubectl_json(server, "get", "node", name)


def taints(server: Server, name: str) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node(server, name)["spec"].get("taints") or []}


def conditions(server: Server, name: str) -> dict[str, dict]:
    return {c["type"]: c for c in node(server, name)["status"]["conditions"]}


def register(server: Server, *names: str) -> None:
    async def go() -> None:
        async with client_for(server) as client:
            for name in names:
                await register_node(client, name)

    run(go())


def replicaset(name: str, replicas: int, tolerations: list[dict] | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def bound(server: Server, ns: str, app: str) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["spec"].get("nodeName", "")
        for p in live(list_items(server, "pods", ns, f"app={app}"))
    }


def test_lost_node_is_tainted_pods_move_and_it_recovers(server: Server) -> None:
    ns = create_namespace(server, "nl")
    with Heartbeats(server) as beats:
        register(server, "nl-a")
        beats.nodes.add("nl-a")
        apply_obj(server, replicaset("web", 2), ns)
        # a pod that tolerates unreachable forever stays put
        forever = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
        apply_obj(server, replicaset("stay", 1, forever), ns)
        wait_for(
            lambda: (b := bound(server, ns, "web")) and set(b.values()) == {"nl-a"} and len(b) == 2,
            what="web on nl-a",
        )
        wait_for(lambda: set(bound(server, ns, "stay").values()) == {"nl-a"}, what="stay on nl-a")
        mark_pods_ready(server, ns)
        first = set(bound(server, ns, "web"))
        register(server, "nl-b")
        beats.nodes.add("nl-b")
        assert taints(server, "nl-a") == set()

        beats.nodes.discard("nl-a")  # its kubelet dies
        wait_for(lambda: conditions(server, "nl-a")["Ready"]["status"] == "Unknown", what="Ready=Unknown")
        conds = conditions(server, "nl-a")
        for type_ in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            assert conds[type_]["status"] == "Unknown"
            assert conds[type_]["reason"] == "NodeStatusUnknown"
            assert conds[type_]["message"] == "Kubelet stopped posting node status."
        wait_for(
            lambda: (
                {
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/unreachable", "NoSchedule"),
                }
                <= taints(server, "nl-a")
            ),
            what="unreachable taints",
        )
        assert conditions(server, "nl-b")["Ready"]["status"] == "True"
        assert taints(server, "nl-b") == set()

        # evicted after 2 s, recreated by the ReplicaSet, bound to the healthy node
        moved = wait_for(
            lambda: (
                (b := bound(server, ns, "web"))
                and len(b) == 2
                and set(b.values()) == {"nl-b"}
                and not (set(b) & first)
                and b
            ),
            what="web pods recreated on nl-b",
        )
        assert len(moved) == 2
        evicted = [p for p in list_items(server, "pods", ns, "app=web") if p["metadata"]["name"] in first]
        for pod in evicted:  # Terminating until a kubelet confirms, as on kube
            assert pod["metadata"].get("deletionTimestamp")
            assert any(c["type"] == "DisruptionTarget" for c in pod["status"]["conditions"])
        assert set(bound(server, ns, "stay").values()) == {"nl-a"}  # tolerates unreachable forever

        # non-graceful node shutdown: the admin says the node is out of service, pod GC
        # force-deletes what was terminating there
        server.kubectl("taint", "node", "nl-a", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
        gone = {p["metadata"]["name"] for p in evicted}
        wait_for(
            lambda: not gone & {p["metadata"]["name"] for p in list_items(server, "pods", ns)},
            what="terminating pods force-deleted",
        )
        server.kubectl("taint", "node", "nl-a", "node.kubernetes.io/out-of-service-")

        # the kubelet comes back
        async def back() -> None:
            async with client_for(server) as client:
                await renew_lease(client, "nl-a")
                await set_node_ready(client, "nl-a", True)

        run(back())
        beats.nodes.add("nl-a")
        wait_for(lambda: not taints(server, "nl-a"), what="taints removed")
        assert conditions(server, "nl-a")["Ready"]["status"] == "True"


def test_not_ready_node_gets_the_not_ready_taint(server: Server) -> None:
    with Heartbeats(server) as beats:
        register(server, "nl-sick", "nl-b")  # nl-b healthy again: the zone is not all down
        beats.nodes |= {"nl-sick", "nl-b"}

        async def sick() -> None:
            async with client_for(server) as client:
                await set_node_ready(client, "nl-sick", False)

        run(sick())
        wait_for(
            lambda: (
                {
                    ("node.kubernetes.io/not-ready", "NoExecute"),
                    ("node.kubernetes.io/not-ready", "NoSchedule"),
                }
                <= taints(server, "nl-sick")
            ),
            what="not-ready taints",
        )
        assert conditions(server, "nl-sick")["Ready"]["status"] == "False"  # the kubelet's word stands
        server.kubectl("cordon", "nl-sick")
        wait_for(
            lambda: ("node.kubernetes.io/unschedulable", "NoSchedule") in taints(server, "nl-sick"),
            what="unschedulable taint",
        )


def test_no_evictions_when_every_node_is_down(server: Server) -> None:
    """All nodes of the only zone lost: kube blames the control plane's network, halts
    evictions and takes the NoExecute taints off (NoSchedule ones stay)."""
    names = [n["metadata"]["name"] for n in list_items(server, "nodes")]
    assert len(names) >= 3
    wait_for(
        lambda: all(conditions(server, n)["Ready"]["status"] == "Unknown" for n in names),
        what="every node Unknown",
    )
    wait_for(
        lambda: all(
            ("node.kubernetes.io/unreachable", "NoSchedule") in taints(server, n)
            and not any(effect == "NoExecute" for _, effect in taints(server, n))
            for n in names
        ),
        what="NoSchedule only",
    )
