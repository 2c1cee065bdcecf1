"""A real ``kybern server`` for a test: SQLite in a temp dir, a free port, the real kubectl.

Readiness is judged the way a user would: ``kubectl get --raw /readyz`` with the kubeconfig the
server writes, so the helper depends on nothing inside the API server plugin.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kybern.components import KNOWN_COMPONENTS

from support.cli import KYBERN

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

#: `kybern server` arguments that leave only the API server (and its store) running
API_ONLY: tuple[str, ...] = tuple(
    arg for name in KNOWN_COMPONENTS if name != "apiserver" for arg in ("--disable", name)
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    cache_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server (own cache dir: discovery is never stale)."""
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({out.returncode}): {out.stderr}{out.stdout}"
            )
        return out

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_server(
    base: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> Iterator[Server]:
    """Start ``kybern server --disable-agent ARGS`` under ``base`` and stop it afterwards."""
    port = free_port()
    data_dir = base / "data"
    log_path = base / "server.log"
    cmd = [
        str(KYBERN),
        "server",
        "--disable-agent",
        "--data-dir",
        str(data_dir),
        "--bind-address",
        "127.0.0.1",
        "--https-listen-port",
        str(port),
        *args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    server = Server(data_dir, port, process, log_path, base / "kubectl-cache")
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"kybern server exited ({process.returncode}):\n{server.log()}")
            if server.kubeconfig.exists():
                ready = server.kubectl("get", "--raw", "/readyz", check=False, timeout=10)
                if ready.returncode == 0 and ready.stdout.strip() == "ok":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kybern server not ready after {timeout:.0f}s:\n{server.log()}")
            time.sleep(0.3)
        yield server
    finally:
        server.stop()
