"""An agent whose Podman cannot start containers registers its node NotReady with the
runtime's one-line diagnosis (here: ulimits over the host's hard limit) instead of crashing."""

from __future__ import annotations

import json
import resource

import pytest
from runtimes.podman_env import write_containers_conf

from .nodes import Cluster, Node, cleanup_podman, start_agent
from .test_agents import stop

pytestmark = pytest.mark.podman


def test_unusable_podman_makes_the_node_not_ready_with_the_fix(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 1048576:
        pytest.skip("the host's nofile hard limit is too high for Podman's defaults to exceed it")
    base = tmp_path_factory.mktemp("agent-broken")
    conf = write_containers_conf(base / "containers.conf", ulimits=False)
    node = Node(base / "data", conf, "node-broken")
    agent = start_agent(cluster.server, base, conf, cluster.cidr, "node-broken")  # type: ignore[attr-defined]
    try:

        def not_ready() -> dict | None:
            out = cluster.kubectl("get", "node", "node-broken", "-o", "json", check=False)
            if out.returncode != 0:
                return None
            conds = json.loads(out.stdout).get("status", {}).get("conditions") or []
            ready = [c for c in conds if c["type"] == "Ready"]
            return ready[0] if ready and ready[0]["status"] == "False" else None

        ready = cluster.wait_for("node-broken NotReady", not_ready, timeout=90)
        assert ready["reason"] == "KubeletNotReady"
        assert "default_ulimits" in ready["message"] and "\n" not in ready["message"]
        assert agent.poll() is None, "the agent keeps running"
    finally:
        stop(agent)
        cleanup_podman(node)
        cluster.kubectl("delete", "node", "node-broken", check=False)
