"""The controllers on two real node agents (Podman): a DaemonSet runs one pod on each, and when
one agent dies its Deployment pods come back on the other (node lifecycle taints the lost
node, the taint manager evicts after the pods' toleration seconds, the ReplicaSet replaces)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nodes import BUSYBOX, Cluster, Node, cleanup_podman, kubelet_cluster, start_agent, wait_node_ready

pytestmark = [pytest.mark.podman, pytest.mark.slow]

DAEMONSET = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agentd}}
spec:
  selector: {{matchLabels: {{app: agentd}}}}
  template:
    metadata: {{labels: {{app: agentd}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: main, image: {BUSYBOX}, command: [sleep, "3600"]}}]
"""

DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
          labelSelector: {{matchLabels: {{app: web}}}}}}
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
      containers: [{{name: main, image: {BUSYBOX}, command: [sleep, "3600"]}}]
"""


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Node, Path]]:
    base = tmp_path_factory.mktemp("two-agents")
    (base / "a").mkdir()
    (base / "b").mkdir()
    # a grace period above the agents' 10 s lease renewal (as Kubernetes requires), short
    # enough that a dead agent is noticed within the test
    with kubelet_cluster(base / "a", "node-a", "--node-monitor-grace-period", "25s") as cluster:
        node_b = Node(base / "b" / "data", cluster.nodes[0].conf, "node-b")
        try:
            yield cluster, node_b, base / "b"
        finally:
            cleanup_podman(node_b)


def running_by_node(cluster: Cluster, app: str) -> dict[str, int]:
    pods = cluster.json("get", "pods", "-l", f"app={app}")["items"]
    counts: dict[str, int] = {}
    for pod in pods:
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
            node = pod["spec"].get("nodeName") or ""
            counts[node] = counts.get(node, 0) + 1
    return counts


def test_daemonset_on_both_agents_and_pods_leave_a_dead_agent(
    two_nodes: tuple[Cluster, Node, Path],
) -> None:
    cluster, node_b, base_b = two_nodes
    agent = start_agent(cluster.server, base_b, node_b.conf, cluster.cidr, "node-b")  # type: ignore[attr-defined]
    try:
        wait_node_ready(cluster, "node-b")
        node_b.load_image(cluster.archive)  # type: ignore[arg-type]
        cluster.apply(DAEMONSET)
        cluster.wait_for(
            "a daemon pod Running on each node",
            lambda: running_by_node(cluster, "agentd") == {"node-a": 1, "node-b": 1},
            timeout=120,
        )
        cluster.apply(DEPLOYMENT)
        cluster.wait_for(
            "4 web pods Running on both nodes",
            lambda: (
                sum(running_by_node(cluster, "web").values()) == 4
                and running_by_node(cluster, "web").get("node-b", 0) > 0
            ),
            timeout=120,
        )
        # the agent dies without a goodbye: its lease stops, node lifecycle takes over
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        cluster.wait_for(
            "the web pods replaced on node-a",
            lambda: running_by_node(cluster, "web") == {"node-a": 4},
            timeout=150,
        )
        node = cluster.json("get", "node", "node-b")
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        assert "node.kubernetes.io/unreachable" in taints
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        cluster.kubectl("delete", "deployment", "web", "--wait=false", check=False)
        cluster.kubectl("delete", "daemonset", "agentd", "--wait=false", check=False)
