"""The scheduler in a real ``kybern server --disable-agent``: Nodes created through the API,
pods created with the real kubectl, placement read back with kubectl.

One server for the module (with a second, bin-packing profile); each test makes its own
namespace and nodes and removes them, so tests see only their own nodes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kybern.quantity import cpu_millis, memory_bytes
from support.cluster import Server, free_port, running_server

from .kube import (
    MOST_ALLOCATED_CONFIG,
    apply,
    cleanup,
    make_nodes,
    namespace,
    placement,
    pod_manifest,
    pods,
    scheduled_condition,
    wait_bound,
    wait_for,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("sched")
    config = base / "scheduler.yaml"
    config.write_text(MOST_ALLOCATED_CONFIG)
    with running_server(
        base, "--scheduler-config", str(config), "--disable", "controller-manager", "--disable", "kubelet"
    ) as srv:
        yield srv


def test_burst_of_200_pods_never_overcommits(server: Server) -> None:
    ns = namespace(server, "burst")
    nodes = [("burst-s", "2", "4Gi"), ("burst-m", "4", "8Gi"), ("burst-l", "8", "6Gi")]
    make_nodes(server, *({"name": n, "cpu": c, "memory": m} for n, c, m in nodes))
    try:
        apply(server, [pod_manifest(f"p{i:03d}", ns, cpu="100m", memory="64Mi") for i in range(200)])
        # cpu caps the nodes at 20 + 40 + 80 = 140 pods
        where = wait_bound(server, ns, 140)

        def unschedulable_left() -> bool:
            items = pods(server, ns)
            pending = [p for p in items if not p["spec"].get("nodeName")]
            return len(pending) == 60 and all(
                (scheduled_condition(p) or {}).get("reason") == "Unschedulable" for p in pending
            )

        wait_for("60 pods marked Unschedulable", unschedulable_left)
        items = pods(server, ns)
        where = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in items}
        assert Counter(where.values()) == {"burst-s": 20, "burst-m": 40, "burst-l": 80, "": 60}
        for name, cpu, memory in nodes:
            on_node = [p for p in items if p["spec"].get("nodeName") == name]
            used_cpu = sum(
                cpu_millis(p["spec"]["containers"][0]["resources"]["requests"]["cpu"]) for p in on_node
            )
            used_mem = sum(
                memory_bytes(p["spec"]["containers"][0]["resources"]["requests"]["memory"]) for p in on_node
            )
            assert used_cpu <= cpu_millis(cpu) and used_mem <= memory_bytes(memory)
        pending = next(p for p in items if not p["spec"].get("nodeName"))
        assert scheduled_condition(pending)["message"] == (
            "0/3 nodes are available: 3 Insufficient cpu. "
            "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        )
    finally:
        cleanup(server, ns, *(n for n, _, _ in nodes))


def test_most_allocated_packs_and_least_allocated_spreads(server: Server) -> None:
    ns = namespace(server, "packing")
    names = ["pack-a", "pack-b", "pack-c"]
    make_nodes(server, *({"name": n, "cpu": "4", "memory": "8Gi"} for n in names))
    try:
        apply(
            server, [pod_manifest(f"bin{i}", ns, cpu="500m", schedulerName="bin-packing") for i in range(6)]
        )
        packed = wait_bound(server, ns, 6)
        assert len(set(packed.values())) == 1, packed
        cleanup(server, ns)
        wait_for("pods gone", lambda: not pods(server, ns))
        apply(server, [pod_manifest(f"spread{i}", ns, cpu="500m") for i in range(6)])
        spread = wait_bound(server, ns, 6)
        assert sorted(Counter(spread.values()).values()) == [2, 2, 2], spread
    finally:
        cleanup(server, ns, *names)


def test_node_selector_affinity_taints_and_tolerations(server: Server) -> None:
    ns = namespace(server, "placement")
    make_nodes(
        server,
        {"name": "pl-ssd", "labels": {"disk": "ssd", "zone": "z1"}},
        {"name": "pl-hdd", "labels": {"disk": "hdd", "zone": "z2"}},
        {
            "name": "pl-gpu",
            "labels": {"zone": "z3"},
            "taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}],
        },
    )
    try:
        required_z2 = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2", "z9"]}]}
                    ]
                }
            }
        }
        tolerate = [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
        apply(
            server,
            [
                pod_manifest("by-selector", ns, nodeSelector={"disk": "ssd"}),
                pod_manifest("by-affinity", ns, affinity=required_z2),
                pod_manifest("tolerant", ns, tolerations=tolerate, nodeSelector={"zone": "z3"}),
                pod_manifest("intolerant", ns, nodeSelector={"zone": "z3"}),
            ],
        )
        where = wait_bound(server, ns, 3)
        assert where == {
            "by-selector": "pl-ssd",
            "by-affinity": "pl-hdd",
            "tolerant": "pl-gpu",
            "intolerant": "",
        }

        def condition() -> dict | None:
            pod = next(p for p in pods(server, ns) if p["metadata"]["name"] == "intolerant")
            return scheduled_condition(pod)

        cond = wait_for("Unschedulable condition", condition)
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
        assert cond["message"].startswith(
            "0/3 nodes are available: 1 node(s) had untolerated taint {gpu: yes}, "
            "2 node(s) didn't match Pod's node affinity/selector."
        )
        events = json.loads(
            server.kubectl(
                "get", "events", "-n", ns, "--field-selector", "involvedObject.name=intolerant", "-o", "json"
            ).stdout
        )["items"]
        failed = [e for e in events if e["reason"] == "FailedScheduling"]
        assert failed and failed[0]["type"] == "Warning" and failed[0]["message"] == cond["message"]
        scheduled = json.loads(
            server.kubectl(
                "get", "events", "-n", ns, "--field-selector", "involvedObject.name=tolerant", "-o", "json"
            ).stdout
        )["items"]
        assert [e["message"] for e in scheduled if e["reason"] == "Scheduled"] == [
            f"Successfully assigned {ns}/tolerant to pl-gpu"
        ]
    finally:
        cleanup(server, ns, "pl-ssd", "pl-hdd", "pl-gpu")


def test_topology_spread_and_anti_affinity(server: Server) -> None:
    ns = namespace(server, "spread")
    names = ["sp-a1", "sp-a2", "sp-b1", "sp-c1"]
    zones = {"sp-a1": "a", "sp-a2": "a", "sp-b1": "b", "sp-c1": "c"}
    make_nodes(server, *({"name": n, "labels": {"topology.kubernetes.io/zone": zones[n]}} for n in names))
    try:
        constraint = [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }
        ]
        # bin-packing would stack them on one node if the constraint were ignored
        apply(
            server,
            [
                pod_manifest(
                    f"web{i}",
                    ns,
                    labels={"app": "web"},
                    topologySpreadConstraints=constraint,
                    schedulerName="bin-packing",
                )
                for i in range(6)
            ],
        )
        where = wait_bound(server, ns, 6)
        assert Counter(zones[n] for n in where.values()) == {"a": 2, "b": 2, "c": 2}
        anti = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "solo"}},
                    }
                ]
            }
        }
        apply(
            server,
            [
                pod_manifest(
                    f"solo{i}", ns, labels={"app": "solo"}, affinity=anti, schedulerName="bin-packing"
                )
                for i in range(5)
            ],
        )
        where = wait_bound(server, ns, 10)
        solo = [n for p, n in where.items() if p.startswith("solo")]
        assert sorted(n for n in solo if n) == sorted(names)
    finally:
        cleanup(server, ns, *names)


def test_pending_pod_is_retried_when_a_node_is_added(server: Server) -> None:
    ns = namespace(server, "retry")
    try:
        apply(server, [pod_manifest("waiting", ns, cpu="3", nodeSelector={"pool": "retry"})])
        wait_for(
            "Unschedulable",
            lambda: (scheduled_condition(pods(server, ns)[0]) or {}).get("reason") == "Unschedulable",
        )
        make_nodes(server, {"name": "retry-small", "cpu": "2", "labels": {"pool": "retry"}})
        make_nodes(server, {"name": "retry-big", "cpu": "4", "labels": {"pool": "retry"}})
        assert wait_bound(server, ns, 1, timeout=30) == {"waiting": "retry-big"}
    finally:
        cleanup(server, ns, "retry-small", "retry-big")


def test_pods_of_other_schedulers_are_left_alone(server: Server) -> None:
    ns = namespace(server, "others")
    make_nodes(server, {"name": "others-n"})
    try:
        apply(server, [pod_manifest("mine", ns), pod_manifest("theirs", ns, schedulerName="someone-else")])
        wait_bound(server, ns, 1)
        theirs = next(p for p in pods(server, ns) if p["metadata"]["name"] == "theirs")
        assert not theirs["spec"].get("nodeName") and scheduled_condition(theirs) is None
    finally:
        cleanup(server, ns, "others-n")


def test_higher_priority_pod_preempts(server: Server) -> None:
    ns = namespace(server, "preempt")
    make_nodes(server, {"name": "pre-n", "cpu": "2", "labels": {"pool": "preempt"}})
    try:
        sel = {"pool": "preempt"}
        apply(server, [pod_manifest(f"low{i}", ns, cpu="1", priority=10, nodeSelector=sel) for i in range(2)])
        wait_bound(server, ns, 2)
        apply(server, [pod_manifest("high", ns, cpu="1", priority=1000, nodeSelector=sel)])

        def nominated() -> str | None:
            high = next(p for p in pods(server, ns) if p["metadata"]["name"] == "high")
            return (high.get("status") or {}).get("nominatedNodeName")

        assert wait_for("nominatedNodeName", nominated) == "pre-n"
        victims = [p for p in pods(server, ns) if p["metadata"].get("deletionTimestamp")]
        assert len(victims) == 1 and victims[0]["metadata"]["name"].startswith("low")
        # no kubelet finishes the graceful deletion here: do it as the kubelet would
        server.kubectl(
            "delete", "pod", victims[0]["metadata"]["name"], "-n", ns, "--force", "--grace-period=0"
        )
        where = wait_bound(server, ns, 2)
        assert where["high"] == "pre-n"
    finally:
        cleanup(server, ns, "pre-n")


def test_bad_scheduler_config_is_a_one_line_error(tmp_path: Path) -> None:
    from support.cli import assert_one_line_error, run_kybern

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
        "profiles:\n- plugins:\n    score:\n      enabled:\n      - name: NoSuchPlugin\n"
    )
    result = run_kybern(
        "server",
        "--disable-agent",
        "--data-dir",
        str(tmp_path / "d"),
        "--bind-address",
        "127.0.0.1",
        "--https-listen-port",
        str(free_port()),
        "--scheduler-config",
        str(bad),
    )
    assert_one_line_error(result, "profiles[0].plugins.score.enabled[0]", "unknown plugin 'NoSuchPlugin'")


def test_gated_pods_wait_for_their_gates(server: Server) -> None:
    ns = namespace(server, "gates")
    make_nodes(server, {"name": "gates-n"})
    try:
        apply(server, [pod_manifest("gated", ns, schedulingGates=[{"name": "example.com/wait"}])])
        apply(server, [pod_manifest("free", ns)])
        wait_bound(server, ns, 1)
        assert placement(server, ns)["gated"] == ""
        server.kubectl(
            "patch",
            "pod",
            "gated",
            "-n",
            ns,
            "--type=json",
            "-p",
            '[{"op":"remove","path":"/spec/schedulingGates"}]',
        )
        assert wait_bound(server, ns, 2)["gated"] == "gates-n"
    finally:
        cleanup(server, ns, "gates-n")
