"""Real kybern processes with the node agent on an isolated Podman (shared by the kubelet
tests and the pod start-up benchmark).

Each server or agent gets its own Podman storage, run directory, socket and network-config
directory (``--podman-isolated``), the test-local containers.conf (runc, ulimits within the
host's hard limits) and a cluster CIDR no host route covers, so nothing touches the host's
Podman and parallel runs stay apart. ``cleanup_podman`` removes every pod, container and
network afterwards and unmounts what Podman left mounted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kybern.runtimes.podman.config import PodmanConfig
from kybern.runtimes.podman.service import PodmanService
from runtimes.podman_env import busybox_archive, release_dirs, write_containers_conf
from support.cli import KYBERN
from support.cluster import Server, free_port

BUSYBOX = "localhost/kybern-busybox:1.0"


def free_cluster_cidr() -> str:
    """A /16 under 10.200-250.0.0 that no host route overlaps."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(100):
        second = random.randint(200, 250)
        if f"10.{second}." not in routes:
            return f"10.{second}.0.0/16"
    raise RuntimeError("no free /16 for the test cluster CIDR")


@dataclass
class Node:
    """The Podman side of one node agent, for checks with the podman CLI."""

    data_dir: Path
    conf: Path
    name: str

    @property
    def podman(self) -> PodmanConfig:
        return PodmanConfig(
            data_dir=self.data_dir, node_name=self.name, isolated=True, containers_conf=self.conf
        )

    def cli(self, *args: str, check: bool = True) -> str:
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        out = subprocess.run(
            ["podman", *self.podman.global_args(), *args],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def logs(self, cid: str) -> str:
        """A container's output (httpd logs to stderr, which ``podman logs`` keeps apart)."""
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        out = subprocess.run(["podman", *self.podman.global_args(), "logs", cid], capture_output=True,
                             text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
        return out.stdout + out.stderr

    def containers(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("ps", "-a", "--format", "json") or "[]")

    def load_image(self, archive: Path) -> None:
        if not self._has_image():
            self.cli("load", "--quiet", "-i", str(archive))

    def _has_image(self) -> bool:
        return bool(self.cli("images", "-q", BUSYBOX, check=False).strip())


@dataclass
class Cluster:
    server: Server
    nodes: list[Node] = field(default_factory=list)
    archive: Path | None = None

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.server.kubectl(*args, check=check, timeout=timeout)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: str) -> None:
        path = self.server.data_dir.parent / f"manifest-{time.monotonic_ns()}.yaml"
        path.write_text(manifest)
        self.kubectl("apply", "-f", str(path))

    def wait_for(self, what: str, check: Any, timeout: float = 60, interval: float = 0.5) -> Any:
        """Poll ``check()`` until it returns something truthy; fail with the last value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{self.server.log()[-3000:]}")

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.json("get", "pod", name, "-n", namespace)

    def ready_nodes(self) -> list[dict[str, Any]]:
        """The nodes whose Ready condition is True."""
        return [
            n
            for n in self.json("get", "nodes")["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        ]

    def container_status(self, pod: str, index: int = 0) -> dict[str, Any]:
        statuses = (self.pod(pod).get("status") or {}).get("containerStatuses") or []
        return statuses[index] if len(statuses) > index else {}

    def events(self, pod: str) -> list[dict[str, Any]]:
        items = self.json("get", "events", "--field-selector", f"involvedObject.name={pod}")["items"]
        return items


def agent_args(data_dir: Path, conf: Path, cidr: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--podman-isolated", "--podman-containers-conf", str(conf),
            "--cluster-cidr", cidr]  # fmt: skip


def _wait_ready(server: Server, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"kybern exited ({process.returncode}):\n{server.log()}")
        if server.kubeconfig.exists():
            ready = server.kubectl("get", "--raw", "/readyz", check=False, timeout=10)
            if ready.returncode == 0 and ready.stdout.strip() == "ok":
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"kybern server not ready after {timeout:.0f}s:\n{server.log()}")
        time.sleep(0.3)


def start_server(base: Path, conf: Path | None, cidr: str | None, node_name: str, *extra: str,
                 port: int | None = None) -> Server:  # fmt: skip
    """``kybern server`` with its node agent; ``conf``/``cidr`` None: no Podman options."""
    port = port or free_port()
    data_dir = base / "data"
    log_path = base / "server.log"
    node_args = agent_args(data_dir, conf, cidr) if conf and cidr else ["--data-dir", str(data_dir)]
    cmd = [str(KYBERN), "server", "--bind-address", "127.0.0.1", "--https-listen-port", str(port),
           "--node-name", node_name, *node_args, *extra]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(data_dir, port, process, log_path, base / "kubectl-cache")
    try:
        _wait_ready(server, process, 90)
    except BaseException:
        server.stop()
        raise
    return server


def start_agent(server: Server, base: Path, conf: Path, cidr: str, node_name: str) -> subprocess.Popen[bytes]:
    token = (server.data_dir / "node-token").read_text().strip()
    cmd = [str(KYBERN), "agent", "--server", f"https://127.0.0.1:{server.port}", "--node-name", node_name,
           "--server-ca", str(server.data_dir / "tls" / "ca.crt"),
           *agent_args(base / "data", conf, cidr)]  # fmt: skip
    log = open(base / "agent.log", "ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "KYBERN_TOKEN": token})  # fmt: skip


def wait_node_ready(cluster: Cluster, name: str, timeout: float = 90) -> None:
    def ready() -> bool:
        out = cluster.kubectl("get", "node", name, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conds = json.loads(out.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    cluster.wait_for(f"node {name} Ready", ready, timeout)


def cleanup_podman(node: Node) -> None:
    """Remove every pod, container and network the node's agent made; unmount its storage.
    Runs after the agent stopped (its Podman service is gone; the CLI works on the storage)."""
    PodmanService(node.podman).stop_leftover()  # an agent that died without closing it
    node.cli("pod", "rm", "-af", "-t", "0", check=False)
    node.cli("rm", "-af", "-t", "0", check=False)
    for net in node.cli("network", "ls", "--format", "{{.Name}}", check=False).split():
        if net.startswith("kybern-"):
            node.cli("network", "rm", "-f", net, check=False)
    release_dirs(node.podman)


def start_hollow(base: Path, nodes: int, prefix: str, cpu: str, memory: str, pods: int) -> Server:
    """``kybern server`` whose agent runs ``nodes`` hollow nodes (the simulated runtime)."""
    return start_server(
        base, None, None, "ignored", "--runtime", "simulated", "--nodes", str(nodes),
        "--node-name-prefix", prefix, "--cpu", cpu, "--memory", memory, "--pods", str(pods),
    )  # fmt: skip


@contextmanager
def hollow_cluster(
    base: Path, nodes: int, prefix: str, cpu: str, memory: str, pods: int
) -> Iterator[Cluster]:
    """The Cluster of a :func:`start_hollow` server, stopped when the block ends."""
    server = start_hollow(base, nodes, prefix, cpu, memory, pods)
    try:
        yield Cluster(server)
    finally:
        server.stop()


@contextmanager
def kubelet_cluster(base: Path, node_name: str = "node-a", *extra: str) -> Iterator[Cluster]:
    """A ``kybern server`` with its node agent on isolated Podman, the busybox image loaded."""
    conf = write_containers_conf(base / "containers.conf")
    archive = busybox_archive(base)
    cidr = free_cluster_cidr()
    node = Node(base / "data", conf, node_name)
    server = start_server(base, conf, cidr, node_name, *extra)
    cluster = Cluster(server, [node], archive)
    cluster.cidr = cidr  # type: ignore[attr-defined]
    try:
        wait_node_ready(cluster, node_name)
        node.load_image(archive)
        yield cluster
    finally:
        # a test may have restarted the server: stop the one the cluster holds now as well
        cluster.server.stop()
        if cluster.server is not server:
            server.stop()
        cleanup_podman(node)
