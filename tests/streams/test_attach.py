"""``kubectl attach`` through the API server to the node's streaming server and Podman: stdin
reaches the main process (its EOF too, with stdinOnce), output streams back, and leaving an
attach only detaches."""

from __future__ import annotations

import subprocess
import time

import pytest
from kubelet.nodes import BUSYBOX, Cluster
from support.cluster import KUBECTL

pytestmark = [pytest.mark.podman]


def kubectl_cmd(cluster: Cluster, *args: str) -> list[str]:
    server = cluster.server
    return [KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(server.cache_dir), *args]


def running(cluster: Cluster, name: str) -> bool:
    state = cluster.container_status(name).get("state") or {}
    return "running" in state


def test_attach_stdin_to_the_main_process(cluster: Cluster) -> None:
    cluster.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  nodeName: node-a
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'while read line; do echo "got $line"; echo "err $line" >&2; done; echo bye; exit 4']
"""
    )
    cluster.wait_for("reader running", lambda: running(cluster, "reader"), timeout=90)
    out = subprocess.run(
        kubectl_cmd(cluster, "attach", "-i", "reader", "-c", "app"),
        input="one\ntwo\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "got one\ngot two\nbye\n", (out.stdout, out.stderr)
    assert "err one\nerr two\n" in out.stderr
    # stdin's EOF ended the process: the pod finished with its exit code
    terminated = cluster.wait_for(
        "reader to finish",
        lambda: (cluster.container_status("reader").get("state") or {}).get("terminated"),
        timeout=60,
    )
    assert terminated["exitCode"] == 4
    cluster.kubectl("delete", "pod", "reader", "--wait=true", timeout=60)


def test_attach_streams_output_and_detaching_leaves_it_running(cluster: Cluster) -> None:
    cluster.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: ticker}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    command: [sh, -c, 'echo before-attach; i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done']
"""
    )
    cluster.wait_for("ticker running", lambda: running(cluster, "ticker"), timeout=90)
    time.sleep(0.5)  # "before-attach" is history by the time kubectl attaches
    proc = subprocess.Popen(kubectl_cmd(cluster, "attach", "ticker"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert all(line.startswith("tick ") for line in lines), lines
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 3)) and numbers[0] > 0
    time.sleep(1)
    status = cluster.container_status("ticker")
    assert "running" in status["state"] and status["restartCount"] == 0
    again = cluster.kubectl("attach", "ticker", "-c", "nope", check=False)
    assert again.returncode != 0 and "nope" in again.stderr
    cluster.kubectl("delete", "pod", "ticker", "--wait=true", timeout=60)
