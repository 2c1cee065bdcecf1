"""``kubectl attach`` through the API server to the node's streaming server and Podman: stdin
reaches the main process (its EOF too, with stdinOnce), output streams back, and leaving an
attach only detaches."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
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


def _attach_on_pty(
    cluster: Cluster, args: list[str], keys: bytes, until: bytes | None
) -> tuple[int | None, bytes]:
    """kubectl on a 40x120 pseudo-terminal: wait for the prompt, type ``keys``, then
    either wait for kubectl to end or, once ``until`` shows, kill it (a user closing the
    terminal). Returns (exit code, or None when killed; all output)."""
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.execv(KUBECTL, kubectl_cmd(cluster, *args))
    output = b""
    typed = False
    killed = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.3)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            # kubectl redraws the prompt with the terminal size; keys typed before the stream
            # is up are lost (kubectl 1.32), as a user typing too early would find
            if not typed and b"# " in output.split(b"press enter", 1)[-1]:
                os.write(fd, keys)
                typed = True
            elif typed and until is not None and until in output.split(keys.rstrip(b"\n"), 1)[-1]:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # still going after the deadline: the test fails on the output
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = killed or until is None
    finally:
        os.close(fd)
    return (None if killed else os.waitstatus_to_exitcode(status)), output


def test_attach_with_a_terminal(cluster: Cluster) -> None:
    cluster.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: console}}
spec:
  nodeName: node-a
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    stdin: true
    tty: true
    command: [sh]
"""
    )
    cluster.wait_for("console running", lambda: running(cluster, "console"), timeout=90)
    keys = b"echo hi-$((40+2)); stty size\n"
    rc, output = _attach_on_pty(cluster, ["attach", "-it", "console"], keys, b"40 120")
    # killed once the terminal size (through the resize channel) showed
    assert rc is None and b"hi-42" in output, output
    time.sleep(1)
    assert running(cluster, "console"), "a terminal's stdin stays open when the client leaves"
    rc, output = _attach_on_pty(cluster, ["attach", "-it", "console"], b"echo bye-$((1+1)); exit 3\n", None)
    assert b"bye-2" in output, output
    terminated = cluster.wait_for(
        "console to finish",
        lambda: (cluster.container_status("console").get("state") or {}).get("terminated"),
        timeout=60,
    )
    assert terminated["exitCode"] == 3
    cluster.kubectl("delete", "pod", "console", "--wait=true", timeout=60)


def test_python_client_attach_over_v4(cluster: Cluster) -> None:
    """The Python client speaks v4.channel.k8s.io (no stdin close frame)."""
    from kubernetes import client, config
    from kubernetes.stream import stream

    cluster.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: echoer}}
spec:
  nodeName: node-a
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    stdin: true
    command: [sh, -c, 'while read line; do echo "got $line"; done; echo stdin-closed; exit 5']
"""
    )
    cluster.wait_for("echoer running", lambda: running(cluster, "echoer"), timeout=90)
    api_client = config.new_client_from_config(config_file=str(cluster.server.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        resp = stream(
            core.connect_get_namespaced_pod_attach, "echoer", "default", container="app",
            stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False,
        )  # fmt: skip
        assert resp.is_open()
        resp.write_stdin("ping\n")
        out = ""
        deadline = time.monotonic() + 30
        while "got ping\n" not in out and resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
            out += resp.read_stdout()
        assert out == "got ping\n"
        resp.close()
    finally:
        api_client.close()
    # Podman closes the process' stdin when the attach ends (see README): the loop ends
    terminated = cluster.wait_for(
        "echoer to finish",
        lambda: (cluster.container_status("echoer").get("state") or {}).get("terminated"),
        timeout=60,
    )
    assert terminated["exitCode"] == 5
    assert cluster.kubectl("logs", "echoer").stdout == "got ping\nstdin-closed\n"
    cluster.kubectl("delete", "pod", "echoer", "--wait=true", timeout=60)


def test_kubectl_run_interactive(cluster: Cluster) -> None:
    """``kubectl run -i --rm``: creates a pod with stdin and stdinOnce, attaches, deletes it."""
    out = subprocess.run(
        kubectl_cmd(cluster, "run", "oneshot", "-i", "--rm", "--restart=Never", f"--image={BUSYBOX}",
                    "--image-pull-policy=IfNotPresent", "--", "sh", "-c", "read x; echo got-$x; exit 0"),
        input="hello\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "got-hello", out.stdout
    assert 'pod "oneshot" deleted' in out.stdout + out.stderr
    gone = cluster.kubectl("get", "pod", "oneshot", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
