"""Node agents that restart and node agents side by side: a restarted agent adopts running
containers (no restart, no duplicate) and removes what no pod owns any more; a second agent
(``kybern agent`` with its own node name, data dir and Podman) runs pods apart from the first
on its own pod CIDR."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nodes import BUSYBOX, Cluster, Node, cleanup_podman, start_agent, start_server, wait_node_ready
from .test_pods import phase_ready, pod_manifest

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def sleeper(name: str, node: str) -> str:
    return pod_manifest(name, f"  - {{name: app, image: {BUSYBOX}, command: [sleep, '3600']}}", node=node)


@pytest.fixture(scope="module")
def second_node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Path]]:
    base = tmp_path_factory.mktemp("agent-b")
    conf = cluster.nodes[0].conf
    node = Node(base / "data", conf, "node-b")
    yield node, base
    cleanup_podman(node)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def uid_containers(node: Node, uid: str) -> list[dict]:
    """The pod's app containers (not the infra container)."""
    return [
        c for c in node.containers()
        if (c.get("Labels") or {}).get("io.kybern.pod.uid") == uid and not c.get("IsInfra")
    ]  # fmt: skip


def test_second_agent_runs_pods_apart_and_cleans_up_after_restart(
    cluster: Cluster, second_node: tuple[Node, Path]
) -> None:
    node_b, base = second_node
    cidr = cluster.cidr  # type: ignore[attr-defined]
    agent = start_agent(cluster.server, base, node_b.conf, cidr, "node-b")
    try:
        wait_node_ready(cluster, "node-b")
        node_b.load_image(cluster.archive)  # type: ignore[arg-type]
        cluster.apply(sleeper("on-a", "node-a"))
        cluster.apply(sleeper("on-b", "node-b"))
        cluster.wait_for("both Ready", lambda: phase_ready(cluster, "on-a") and phase_ready(cluster, "on-b"))
        a, b = cluster.pod("on-a"), cluster.pod("on-b")
        cidr_a = cluster.json("get", "node", "node-a")["spec"]["podCIDR"]
        cidr_b = cluster.json("get", "node", "node-b")["spec"]["podCIDR"]
        assert cidr_a != cidr_b
        assert ipaddress.ip_address(a["status"]["podIP"]) in ipaddress.ip_network(cidr_a)
        assert ipaddress.ip_address(b["status"]["podIP"]) in ipaddress.ip_network(cidr_b)
        uid_a, uid_b = a["metadata"]["uid"], b["metadata"]["uid"]
        node_a = cluster.nodes[0]
        assert uid_containers(node_a, uid_a) and not uid_containers(node_a, uid_b)
        assert uid_containers(node_b, uid_b) and not uid_containers(node_b, uid_a)
        # pods on different nodes reach each other through the host's routes
        ping = node_a.cli("exec", uid_containers(node_a, uid_a)[0]["Id"], "ping", "-c", "1", "-W", "3",
                          b["status"]["podIP"], check=False)  # fmt: skip
        assert "1 packets received" in ping, ping
        # the agent goes away; its pod is force-deleted meanwhile; back, it removes the leftovers
        stop(agent)
        assert uid_containers(node_b, uid_b), "stopping the agent leaves containers running"
        cluster.kubectl("delete", "pod", "on-b", "--grace-period=0", "--force")
        agent = start_agent(cluster.server, base, node_b.conf, cidr, "node-b")
        cluster.wait_for("leftovers removed", lambda: not uid_containers(node_b, uid_b), timeout=90)
    finally:
        stop(agent)
        # the cluster is shared with later tests: a node whose agent is gone would still be
        # Ready until its lease expires and take their pods
        cluster.kubectl("delete", "node", "node-b", "--wait=false", check=False)


def test_restarted_agent_adopts_running_containers(cluster: Cluster) -> None:
    cluster.wait_for("on-a Ready", lambda: phase_ready(cluster, "on-a"))
    before = cluster.container_status("on-a")
    node = cluster.nodes[0]
    ids_before = sorted(c["Id"] for c in node.containers())
    server = cluster.server
    server.stop()
    assert sorted(c["Id"] for c in node.containers()) == ids_before, "containers outlive the agent"
    base = server.data_dir.parent
    cluster.server = start_server(base, node.conf, cluster.cidr, "node-a", port=server.port)  # type: ignore[attr-defined]
    wait_node_ready(cluster, "node-a")
    cluster.wait_for("on-a Ready again", lambda: phase_ready(cluster, "on-a"))
    after = cluster.container_status("on-a")
    assert after["containerID"] == before["containerID"]
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    assert after["restartCount"] == 0
    assert sorted(c["Id"] for c in node.containers()) == ids_before, "nothing restarted or duplicated"
    cluster.kubectl("delete", "pod", "on-a", "--wait=true", timeout=60)
