"""``kubectl logs`` and ``kubectl exec`` (and the Python client's exec, logs and port-forward)
through the API server, which proxies to the node's streaming server."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import select
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubelet.nodes import BUSYBOX, Cluster
from support.cluster import KUBECTL

pytestmark = [pytest.mark.podman]

TALKER = f"""
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'for i in 1 2 3 4 5; do echo "line $i"; done; echo oops >&2;
      mkdir -p /www; echo hello-www > /www/index.html; head -c 300000 /dev/zero > /www/big;
      httpd -p 8080 -h /www;
      while true; do sleep 1; echo tick; done']
  - name: side
    image: {BUSYBOX}
    command: [sh, -c, 'echo side-hello; sleep 2; echo side-later; exec sleep 3600']
"""

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) ")


def running(cluster: Cluster, name: str) -> bool:
    status = cluster.pod(name).get("status") or {}
    states = [c.get("state") or {} for c in status.get("containerStatuses") or []]
    return bool(states) and all("running" in s for s in states)


@pytest.fixture(scope="module")
def talker(cluster: Cluster) -> Iterator[str]:
    cluster.apply(TALKER)
    cluster.wait_for("talker running", lambda: running(cluster, "talker"), timeout=90)
    cluster.wait_for(
        "talker output",
        lambda: "tick" in cluster.kubectl("logs", "talker", "-c", "main", check=False).stdout,
    )
    yield "talker"
    cluster.kubectl("delete", "pod", "talker", "--wait=false", check=False)


def kubectl_cmd(cluster: Cluster, *args: str) -> list[str]:
    server = cluster.server
    return [KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(server.cache_dir), *args]


# --------------------------------------------------------------------------- logs


def test_logs_of_a_container_with_tail_timestamps_and_all_containers(cluster: Cluster, talker: str) -> None:
    out = cluster.kubectl("logs", talker, "-c", "main").stdout
    assert out.startswith("line 1\nline 2\nline 3\nline 4\nline 5\n"), out
    assert "oops" in out  # stderr is in the log too
    tail = cluster.kubectl("logs", talker, "-c", "main", "--tail", "2").stdout
    assert len(tail.splitlines()) == 2 and tail.splitlines()[-1] == "tick", tail
    stamped = cluster.kubectl("logs", talker, "-c", "side", "--timestamps").stdout.splitlines()
    assert stamped and all(TIMESTAMP.match(line) for line in stamped), stamped
    assert stamped[0].endswith(" side-hello")
    both = cluster.kubectl("logs", talker, "--all-containers").stdout
    assert "line 1" in both and "side-hello" in both
    limited = cluster.kubectl("logs", talker, "-c", "main", "--limit-bytes", "4").stdout
    assert limited == "line"


def test_logs_since_leaves_out_older_lines(cluster: Cluster, talker: str) -> None:
    time.sleep(3)  # the first lines are older than 2 s now
    recent = cluster.kubectl("logs", talker, "-c", "main", "--since", "2s").stdout
    assert "line 1" not in recent and "tick" in recent, recent
    assert "line 1" in cluster.kubectl("logs", talker, "-c", "main", "--since", "1h").stdout


def test_logs_errors_name_the_container(cluster: Cluster, talker: str) -> None:
    out = cluster.kubectl("logs", talker, "-c", "nope", check=False)
    assert out.returncode != 0 and "container nope is not valid for pod talker" in out.stderr
    prev = cluster.kubectl("logs", talker, "-c", "main", "--previous", check=False)
    assert prev.returncode != 0 and "previous terminated container" in prev.stderr, prev.stderr


def test_logs_follow_streams_new_lines(cluster: Cluster, talker: str) -> None:
    proc = subprocess.Popen(
        kubectl_cmd(cluster, "logs", "-f", talker, "-c", "main", "--tail", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(lines) < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                lines.append(proc.stdout.readline())
        # a tail of one line, then lines the container writes while kubectl waits
        assert lines == [b"tick\n"] * 3, lines
        assert proc.poll() is None, "kubectl logs -f must keep following"
    finally:
        proc.kill()
        proc.wait()


def test_logs_previous_after_a_restart(cluster: Cluster) -> None:
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: restarter}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: app
    image: {BUSYBOX}
    volumeMounts: [{{name: data, mountPath: /data}}]
    command: [sh, -c, 'n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n;
      echo run-$n; if [ $n = 1 ]; then exit 1; fi; exec sleep 3600']
""")
    try:

        def restarted() -> bool:
            status = cluster.container_status("restarter")
            return status.get("restartCount", 0) >= 1 and "running" in (status.get("state") or {})

        cluster.wait_for("a restart", restarted, timeout=90)
        assert cluster.kubectl("logs", "restarter").stdout == "run-2\n"
        assert cluster.kubectl("logs", "restarter", "--previous").stdout == "run-1\n"
    finally:
        cluster.kubectl("delete", "pod", "restarter", "--wait=false", check=False)


# --------------------------------------------------------------------------- exec


def test_exec_output_exit_code_and_stdin(cluster: Cluster, talker: str) -> None:
    out = cluster.kubectl("exec", talker, "-c", "main", "--", "ls", "/www")
    assert out.stdout == "big\nindex.html\n"
    split = cluster.kubectl("exec", talker, "-c", "main", "--", "sh", "-c", "echo out; echo err >&2")
    assert split.stdout == "out\n" and "err" in split.stderr
    failed = cluster.kubectl("exec", talker, "-c", "main", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3, failed.stderr
    assert "command terminated with exit code 3" in failed.stderr
    piped = subprocess.run(
        kubectl_cmd(cluster, "exec", "-i", talker, "-c", "side", "--", "sh", "-c", "cat; echo done"),
        input="hi\nthere\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and piped.stdout == "hi\nthere\ndone\n", piped.stderr


def test_exec_errors(cluster: Cluster, talker: str) -> None:
    out = cluster.kubectl("exec", talker, "-c", "nope", "--", "true", check=False)
    assert out.returncode != 0 and "nope" in out.stderr
    missing = cluster.kubectl("exec", talker, "-c", "main", "--", "/no/such/binary", check=False)
    assert missing.returncode != 0


def _pty_kubectl(cluster: Cluster, args: list[str], keys: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """kubectl on a pseudo-terminal (as a user types): the keys, all output, the exit code."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: kubectl sees a 40x120 terminal on stdin and stdout
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.execv(KUBECTL, kubectl_cmd(cluster, *args))
    output = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and (b"# " in output or b"$ " in output):
                os.write(fd, keys)
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_exec_interactive_tty(cluster: Cluster, talker: str) -> None:
    rc, output = _pty_kubectl(
        cluster, ["exec", "-it", talker, "-c", "main", "--", "sh"], b"echo hi-$((40+2)); stty size; exit 3\n"
    )
    assert b"hi-42" in output, output
    assert b"\n40 120\r\n" in output, output  # the terminal size came through the resize channel
    assert rc == 3, output


# --------------------------------------------------------------------------- the Python client


@pytest.fixture(scope="module")
def core_api(cluster: Cluster) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster.server.kubeconfig))
    yield client.CoreV1Api(api_client)
    api_client.close()


def test_python_client_logs_and_exec(core_api: Any, talker: str) -> None:
    from kubernetes.stream import stream

    logs = core_api.read_namespaced_pod_log(talker, "default", container="main", tail_lines=1)
    assert logs == "tick\n"
    resp = stream(
        core_api.connect_get_namespaced_pod_exec, talker, "default", container="main",
        command=["sh", "-c", "echo out; echo err >&2; exit 2"],
        stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False,
    )  # fmt: skip
    resp.run_forever(timeout=30)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 2
    resp.close()
    whole = stream(
        core_api.connect_get_namespaced_pod_exec, talker, "default", container="side",
        command=["echo", "whole"], stdin=False, stdout=True, stderr=True, tty=False,
    )  # fmt: skip
    assert whole == "whole\n"  # with _preload_content: the output at once


def test_python_client_exec_with_stdin(core_api: Any, talker: str) -> None:
    from kubernetes.stream import stream

    resp = stream(
        core_api.connect_get_namespaced_pod_exec, talker, "default", container="main",
        command=["sh", "-c", "read line; echo got-$line"],
        stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False,
    )  # fmt: skip
    resp.write_stdin("value\n")
    resp.run_forever(timeout=30)
    assert resp.read_stdout() == "got-value\n"
    assert resp.returncode == 0
    resp.close()


def test_python_client_port_forward(core_api: Any, talker: str) -> None:
    from kubernetes.stream import portforward

    pf = portforward(core_api.connect_get_namespaced_pod_portforward, talker, "default", ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.settimeout(30)
    sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.") and b"hello-www" in reply, reply
    assert pf.error(8080) is None
    pf.close()


def _http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_kubectl_port_forward(cluster: Cluster, talker: str) -> None:
    """kubectl 1.32 speaks SPDY/3.1 inside a WebSocket; several connections, one big reply."""
    proc = subprocess.Popen(
        kubectl_cmd(cluster, "port-forward", talker, ":8080"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080", first)
        assert match, first
        port = int(match.group(1))
        for _ in range(2):
            reply = _http_get(port, "/index.html")
            assert reply.startswith(b"HTTP/1.") and reply.endswith(b"hello-www\n"), reply
        big = _http_get(port, "/big")
        assert big.endswith(b"\0" * 300000) and b"Content-Length: 300000" in big, big[:200]
        missing = _http_get(port, "/nope")
        assert b" 404 " in missing.split(b"\r\n")[0]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kubectl_cp_both_ways(cluster: Cluster, talker: str, tmp_path: Path) -> None:
    """``kubectl cp`` is exec with tar: to the pod it needs stdin's end (v5's close frame)."""
    local = tmp_path / "up.txt"
    local.write_text("copied up\n" * 1000)
    cluster.kubectl("cp", str(local), f"{talker}:/tmp/up.txt", "-c", "main")
    assert cluster.kubectl("exec", talker, "-c", "main", "--", "md5sum", "/tmp/up.txt").stdout.startswith(
        hashlib.md5(local.read_bytes()).hexdigest()
    )
    back = tmp_path / "down.txt"
    cluster.kubectl("cp", f"{talker}:/tmp/up.txt", str(back), "-c", "main")
    assert back.read_bytes() == local.read_bytes()


def test_kubectl_port_forward_upload(cluster: Cluster, talker: str) -> None:
    """Bytes to the pod: more than SPDY's initial 64 KiB window, then the end of the stream."""
    # nc's stdin stays open (a pipe of ours): at its end busybox nc half-closes the connection,
    # and kubectl ends a forwarded connection when the pod's side closes
    listener = subprocess.Popen(
        kubectl_cmd(cluster, "exec", "-i", talker, "-c", "side", "--", "sh", "-c", "nc -lp 9000 >/tmp/recv"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
    )  # fmt: skip
    proc = subprocess.Popen(
        kubectl_cmd(cluster, "port-forward", talker, ":9000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 9000", proc.stdout.readline())
        assert match
        payload = bytes(range(256)) * 1200  # 300 KiB
        tcp = ("exec", talker, "-c", "side", "--", "sh", "-c", "cat /proc/net/tcp*")
        cluster.wait_for("nc listening", lambda: ":2328 " in cluster.kubectl(*tcp).stdout)  # 9000 in hex
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=30) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""  # the pod's side closes once nc has it all
        assert listener.stdin is not None
        listener.stdin.close()
        assert listener.wait(timeout=30) == 0
        digest = cluster.kubectl("exec", talker, "-c", "side", "--", "md5sum", "/tmp/recv").stdout
        assert digest.startswith(hashlib.md5(payload).hexdigest()), digest
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if listener.poll() is None:
            listener.kill()
        listener.wait()
