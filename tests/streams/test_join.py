"""Joining with the CA hash in the node token (k3s' ``K10<sha256>::node:<secret>``), and logs
and exec of a pod on a second node: a ``kybern agent`` process with its own node name, data
dir, Podman and streaming port, reached through the API server."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubelet.nodes import BUSYBOX, Cluster, Node, agent_args, cleanup_podman, wait_node_ready
from support.cli import KYBERN

pytestmark = [pytest.mark.podman]


def node_token(cluster: Cluster) -> str:
    return (cluster.server.data_dir / "node-token").read_text().strip()


def test_node_token_carries_the_ca_hash_and_cacerts_is_public(cluster: Cluster) -> None:
    token = node_token(cluster)
    ca = (cluster.server.data_dir / "tls" / "ca.crt").read_bytes()
    assert token.startswith(f"K10{hashlib.sha256(ca).hexdigest()}::node:")
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{cluster.server.port}/cacerts", context=unverified) as r:
        assert r.read() == ca
    # the secret alone still authenticates a node (tokens from before the K10 form)
    secret = token.split("::node:", 1)[1]
    assert cluster.kubectl("get", "--raw", "/api/v1/nodes", "--token", secret).returncode == 0
    wrong = cluster.kubectl("get", "--raw", "/api/v1/nodes", "--token", token[:-4] + "xxxx", check=False)
    assert wrong.returncode != 0 and "Unauthorized" in wrong.stderr


def test_agent_with_a_token_for_another_ca_stops_with_one_line(cluster: Cluster, tmp_path: Path) -> None:
    secret = node_token(cluster).split("::node:", 1)[1]
    out = subprocess.run(
        [str(KYBERN), "agent", "--server", f"https://127.0.0.1:{cluster.server.port}",
         "--token", f"K10{'0' * 64}::node:{secret}", "--node-name", "intruder",
         "--data-dir", str(tmp_path / "data"), "--kubelet-port", "0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("kybern: error:")]
    assert len(errors) == 1 and "does not match the hash in the join token" in errors[0], out.stderr
    assert cluster.kubectl("get", "node", "intruder", check=False).returncode != 0


@pytest.fixture(scope="module")
def agent_b(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("agent-b")
    node = Node(base / "data", cluster.nodes[0].conf, "node-b")
    cmd = [str(KYBERN), "agent", "--server", f"https://127.0.0.1:{cluster.server.port}",
           "--token", node_token(cluster), "--node-name", "node-b", "--kubelet-port", "0",
           *agent_args(node.data_dir, node.conf, cluster.cidr)]  # type: ignore[attr-defined]  # fmt: skip
    with open(base / "agent.log", "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_node_ready(cluster, "node-b")
        node.load_image(cluster.archive)  # type: ignore[arg-type]
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        cleanup_podman(node)


@pytest.mark.slow
def test_logs_and_exec_of_a_pod_on_a_joined_agent(cluster: Cluster, agent_b: Node) -> None:
    # joined with nothing but the URL and the K10 token: it keeps the checked CA and uses it
    ca = (cluster.server.data_dir / "tls" / "ca.crt").read_bytes()
    assert (agent_b.data_dir / "tls" / "server-ca.crt").read_bytes() == ca
    ports = {
        name: cluster.json("get", "node", name)["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        for name in ("node-a", "node-b")
    }
    assert ports["node-a"] != ports["node-b"], ports
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: remote}}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: app, image: {BUSYBOX}, command: [sh, -c, 'echo from-node-b; exec sleep 3600']}}
""")
    try:

        def running() -> bool:
            state = cluster.container_status("remote").get("state") or {}
            return "running" in state

        cluster.wait_for("the pod on node-b running", running, timeout=90)
        cluster.wait_for("its log", lambda: cluster.kubectl("logs", "remote", check=False).stdout)
        assert cluster.kubectl("logs", "remote").stdout == "from-node-b\n"
        out = cluster.kubectl("exec", "remote", "--", "sh", "-c", "hostname; exit 4", check=False)
        assert out.returncode == 4 and out.stdout == "remote\n", out.stderr
    finally:
        cluster.kubectl("delete", "pod", "remote", "--wait=false", check=False)
