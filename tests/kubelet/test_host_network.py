"""spec.hostNetwork on real Podman through kubectl: the pod shares the node's network and
hostname, its IP is the node's, ClusterFirstWithHostNet still resolves through cluster DNS, and
port-forward reaches it on the node's loopback."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request

import pytest
from support.cluster import KUBECTL

from .nodes import BUSYBOX, Cluster

pytestmark = pytest.mark.podman


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def test_host_network_pod_answers_on_the_host(cluster: Cluster) -> None:
    port = free_port()
    cluster.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: hostweb}}
spec:
  nodeName: node-a
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {BUSYBOX}
    command: ["httpd", "-f", "-p", "{port}", "-h", "/www"]
    ports: [{{containerPort: {port}}}]
    env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
    readinessProbe: {{httpGet: {{path: /, port: {port}}}, periodSeconds: 1}}
"""
    )

    def ready() -> dict[str, object] | None:
        status = cluster.pod("hostweb").get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return status if status.get("phase") == "Running" and conds.get("Ready") == "True" else None

    status = cluster.wait_for("hostweb Ready", ready, timeout=90)
    # as in Kubernetes, a host-network pod's hostPort defaults to its containerPort
    assert cluster.pod("hostweb")["spec"]["containers"][0]["ports"][0]["hostPort"] == port
    assert status["podIP"] == status["hostIP"] and status["podIPs"] == [{"ip": status["hostIP"]}]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as response:
        assert "Hello from kybern" in response.read().decode()
    out = cluster.kubectl("exec", "hostweb", "--", "sh", "-c", "hostname; cat /etc/resolv.conf").stdout
    hostname, resolv = out.split("\n", 1)
    assert hostname == socket.gethostname()
    assert "nameserver 10.43.0.10" in resolv and "search default.svc.cluster.local" in resolv, resolv
    env = cluster.kubectl("exec", "hostweb", "--", "env").stdout.splitlines()
    assert f"POD_IP={status['hostIP']}" in env
    # port-forward reaches the pod on the node's own loopback
    server = cluster.server
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(server.cache_dir),
         "port-forward", "hostweb", f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {port}", first)
        assert match, first
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/index.html", timeout=10) as response:
            assert "Hello from kybern" in response.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    cluster.kubectl("delete", "pod", "hostweb", "--wait=true", timeout=60)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5)
