"""The DaemonSet controller on fake nodes (Node + Lease written through the API; the real
scheduler binds the daemon pods, the test reports them running): one pod per eligible node,
a new node gets one, nodeSelector and taints, RollingUpdate with ``kubectl rollout status``,
history and undo through ControllerRevisions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import client_for, create_namespace, kubectl_json, run, set_pod_ready, wait_for
from support.cluster import Server, running_server
from support_nodes import CONTROL_PLANE, apply_obj, list_items, live, register_node

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No kubelet; the fake nodes renew no Lease, so node lifecycle must not mark them
    unreachable (its NoSchedule taint would keep new daemon pods off) during the module."""
    base: Path = tmp_path_factory.mktemp("daemonsets")
    with running_server(base, *CONTROL_PLANE, "--node-monitor-grace-period", "1h") as srv:
        yield srv


def daemonset(name: str, image: str = "busybox:1.36", **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def add_nodes(server: Server, *names: str, labels: dict[str, str] | None = None) -> None:
    async def go() -> None:
        async with client_for(server) as client:
            for name in names:
                await register_node(client, name, labels)

    run(go())


def ds_pods(server: Server, ns: str, name: str) -> list[dict]:
    return live(list_items(server, "pods", ns, f"app={name}"))


def run_pods(server: Server, ns: str, name: str) -> int:
    """Play the kubelets: every bound, not-ready pod becomes Running and Ready."""

    async def go() -> int:
        n = 0
        async with client_for(server) as client:
            for pod in (await client.list("pods", ns, label_selector=f"app={name}"))["items"]:
                if pod["metadata"].get("deletionTimestamp") or not pod["spec"].get("nodeName"):
                    continue
                conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
                if conds.get("Ready") != "True":
                    await set_pod_ready(client, pod)
                    n += 1
        return n

    return run(go())


def pinned_node(pod: dict) -> str:
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]


def test_one_pod_per_node_and_new_nodes_get_one(server: Server) -> None:
    add_nodes(server, "ds-a", "ds-b")
    ns = create_namespace(server, "ds-basic")
    apply_obj(server, daemonset("agent"), ns)
    pods = wait_for(lambda: (p := ds_pods(server, ns, "agent")) and len(p) >= 2 and p, what="2 daemon pods")
    assert sorted(pinned_node(p) for p in pods) == ["ds-a", "ds-b"]
    pod = pods[0]
    assert "controller-revision-hash" in pod["metadata"]["labels"]
    keys = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
    assert {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    } <= keys
    # the scheduler binds them where the affinity pins them
    wait_for(
        lambda: all(p["spec"].get("nodeName") == pinned_node(p) for p in ds_pods(server, ns, "agent")),
        what="pods bound to their nodes",
    )
    run_pods(server, ns, "agent")
    server.kubectl("rollout", "status", "ds/agent", "-n", ns, "--timeout=60s", timeout=90)
    status = kubectl_json(server, "get", "ds", "agent", "-n", ns)["status"]
    assert status["desiredNumberScheduled"] == status["numberReady"] == status["numberAvailable"] == 2

    add_nodes(server, "ds-c")
    wait_for(
        lambda: "ds-c" in {pinned_node(p) for p in ds_pods(server, ns, "agent")}, what="a pod on the new node"
    )
    wait_for(
        lambda: run_pods(server, ns, "agent") == 0 and len(ds_pods(server, ns, "agent")) == 3, what="3 ready"
    )
    server.kubectl("rollout", "status", "ds/agent", "-n", ns, "--timeout=60s", timeout=90)
    # a deleted daemon pod comes back on its node
    victim = ds_pods(server, ns, "agent")[0]
    server.kubectl("delete", "pod", victim["metadata"]["name"], "-n", ns, "--grace-period=0", "--force")
    wait_for(
        lambda: (
            len(ds_pods(server, ns, "agent")) == 3
            and victim["metadata"]["uid"] not in {p["metadata"]["uid"] for p in ds_pods(server, ns, "agent")}
        ),
        what="replacement",
    )


def test_node_selector_and_taints(server: Server) -> None:
    add_nodes(server, "sel-gpu", labels={"gpu": "yes"})
    add_nodes(server, "sel-tainted", labels={"gpu": "yes"})
    server.kubectl("taint", "node", "sel-tainted", "dedicated=x:NoSchedule")
    ns = create_namespace(server, "ds-select")
    spec = daemonset("gpu")
    spec["spec"]["template"]["spec"]["nodeSelector"] = {"gpu": "yes"}
    apply_obj(server, spec, ns)
    wait_for(lambda: [pinned_node(p) for p in ds_pods(server, ns, "gpu")] == ["sel-gpu"], what="only sel-gpu")
    status = wait_for(
        lambda: (
            (s := kubectl_json(server, "get", "ds", "gpu", "-n", ns).get("status") or {})
            and s.get("desiredNumberScheduled") == 1
            and s
        ),
        what="desired 1",
    )
    assert status["currentNumberScheduled"] == 1
    # tolerating the taint makes the tainted node eligible too
    spec["spec"]["template"]["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    apply_obj(server, spec, ns)
    wait_for(
        lambda: {pinned_node(p) for p in ds_pods(server, ns, "gpu")} == {"sel-gpu", "sel-tainted"},
        what="both gpu nodes",
    )


def test_rolling_update_history_and_undo(server: Server) -> None:
    add_nodes(server, "roll-a", "roll-b")
    ns = create_namespace(server, "ds-roll")
    manifest = daemonset("web")
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "roll-a"}
    # two nodes via matchExpressions instead, to keep other tests' nodes out
    del manifest["spec"]["template"]["spec"]["nodeSelector"]
    manifest["spec"]["template"]["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": ["roll-a", "roll-b"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    apply_obj(server, manifest, ns)
    wait_for(lambda: len(ds_pods(server, ns, "web")) == 2, what="2 pods")
    wait_for(
        lambda: (
            run_pods(server, ns, "web") == 0
            and len(ds_pods(server, ns, "web")) == 2
            and all(p["spec"].get("nodeName") for p in ds_pods(server, ns, "web"))
        ),
        what="bound",
    )
    run_pods(server, ns, "web")
    server.kubectl("rollout", "status", "ds/web", "-n", ns, "--timeout=60s", timeout=90)
    first_hash = ds_pods(server, ns, "web")[0]["metadata"]["labels"]["controller-revision-hash"]

    server.kubectl("set", "image", "ds/web", "c=busybox:1.37", "-n", ns)

    async def roll() -> int:
        """Report pods ready as they are bound; track the fewest ready daemon pods seen."""
        fewest = 2
        async with client_for(server) as client:
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                pods = [
                    p
                    for p in (await client.list("pods", ns, label_selector="app=web"))["items"]
                    if not p["metadata"].get("deletionTimestamp")
                ]
                ready = [
                    p
                    for p in pods
                    if any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in (p.get("status") or {}).get("conditions") or []
                    )
                ]
                fewest = min(fewest, len(ready))
                new = [p for p in pods if p["spec"]["containers"][0]["image"] == "busybox:1.37"]
                if len(new) == 2 and len(pods) == 2 and len(ready) == 2:
                    return fewest
                for p in pods:
                    if p["spec"].get("nodeName") and p not in ready:
                        await set_pod_ready(client, p)
                await asyncio.sleep(0.2)
        raise AssertionError("rolling update did not finish")

    fewest = run(roll())
    assert fewest >= 1  # maxUnavailable 1 of 2
    server.kubectl("rollout", "status", "ds/web", "-n", ns, "--timeout=60s", timeout=90)
    history = server.kubectl("rollout", "history", "ds/web", "-n", ns).stdout
    assert "1 " in history and "2 " in history
    revs = kubectl_json(server, "get", "controllerrevisions", "-n", ns)["items"]
    assert sorted(r["revision"] for r in revs) == [1, 2]

    server.kubectl("rollout", "undo", "ds/web", "-n", ns)

    def rolled_back() -> bool:
        run_pods(server, ns, "web")  # the kubelets start each new pod (maxUnavailable needs them)
        pods = ds_pods(server, ns, "web")
        return len(pods) == 2 and all(p["spec"]["containers"][0]["image"] == "busybox:1.36" for p in pods)

    wait_for(rolled_back, timeout=60, what="pods back on the first image")
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in ds_pods(server, ns, "web")} == {
        first_hash
    }
    revs = kubectl_json(server, "get", "controllerrevisions", "-n", ns)["items"]
    assert sorted(r["revision"] for r in revs) == [2, 3]  # the old revision is renumbered


def test_on_delete_waits_for_manual_deletion(server: Server) -> None:
    add_nodes(server, "ondel-a")
    ns = create_namespace(server, "ds-ondelete")
    manifest = daemonset("od", updateStrategy={"type": "OnDelete"})
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "ondel-a"}
    apply_obj(server, manifest, ns)
    pod = wait_for(lambda: ds_pods(server, ns, "od"), what="a pod")[0]
    server.kubectl("set", "image", "ds/od", "c=busybox:1.37", "-n", ns)
    wait_for(
        lambda: kubectl_json(server, "get", "ds", "od", "-n", ns)["status"].get("observedGeneration") == 2,
        what="observed",
    )
    assert [p["metadata"]["uid"] for p in ds_pods(server, ns, "od")] == [pod["metadata"]["uid"]]
    server.kubectl("delete", "pod", pod["metadata"]["name"], "-n", ns, "--grace-period=0", "--force")
    new = wait_for(lambda: ds_pods(server, ns, "od"), what="replacement")[0]
    assert new["spec"]["containers"][0]["image"] == "busybox:1.37"


def test_max_surge_starts_the_new_pod_before_removing_the_old(server: Server) -> None:
    add_nodes(server, "surge-a")
    ns = create_namespace(server, "ds-surge")
    manifest = daemonset(
        "sg", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "surge-a"}
    apply_obj(server, manifest, ns)
    old = wait_for(
        lambda: (p := ds_pods(server, ns, "sg")) and p[0]["spec"].get("nodeName") and p, what="bound"
    )[0]
    run_pods(server, ns, "sg")
    server.kubectl("rollout", "status", "ds/sg", "-n", ns, "--timeout=60s", timeout=90)
    server.kubectl("set", "image", "ds/sg", "c=busybox:1.37", "-n", ns)
    # both on the node at once: the old one stays until the new one is available
    both = wait_for(lambda: (p := ds_pods(server, ns, "sg")) and len(p) == 2 and p, what="surge pod")
    assert old["metadata"]["uid"] in {p["metadata"]["uid"] for p in both}
    assert {pinned_node(p) for p in both} == {"surge-a"}
    wait_for(
        lambda: all(p["spec"].get("nodeName") for p in ds_pods(server, ns, "sg")), what="surge pod bound"
    )
    assert old["metadata"]["uid"] in {p["metadata"]["uid"] for p in ds_pods(server, ns, "sg")}
    run_pods(server, ns, "sg")
    wait_for(
        lambda: [p["spec"]["containers"][0]["image"] for p in ds_pods(server, ns, "sg")] == ["busybox:1.37"],
        what="old pod removed once the new one is ready",
    )
    server.kubectl("rollout", "status", "ds/sg", "-n", ns, "--timeout=60s", timeout=90)
