"""A real ``kybern server --disable-agent`` (SQLite in a temp dir, free port) for API tests.

One server per test module keeps the suite quick on a shared machine; tests use their own
namespaces so they do not see each other's objects. ``kubectl`` runs with its own cache dir
so discovery is never stale.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.pg import drop_database

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
#: a small watch-cache ring so tests can push a resourceVersion out of it quickly
WATCH_CACHE_EVENTS = 100
#: every known component but the API server (kybern.components.KNOWN_COMPONENTS)
OTHER_COMPONENTS = (
    "scheduler",
    "controller-manager",
    "kubelet",
    "proxy",
    "dns",
    "dashboard",
    "metrics",
    "logging",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    data_dir: Path
    kubeconfig: Path
    port: int
    cache_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    @property
    def ca_file(self) -> str:
        return str(self.data_dir / "tls" / "ca.crt")

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def cmd(self, *args: str) -> list[str]:
        return [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]

    def kjson(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def namespace(self) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-5000:]
        except OSError:
            return ""


def start_cluster(base: Path, datastore: str | None = None) -> Cluster:
    port = free_port()
    data_dir = base / "data"
    log_path = base / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "kybern.cli",
        "server",
        "--disable-agent",
        "--data-dir",
        str(data_dir),
        "--https-listen-port",
        str(port),
        "--bind-address",
        "127.0.0.1",
        # these suites test the API server alone: nothing else may write objects behind their back
        *[arg for name in OTHER_COMPONENTS for arg in ("--disable", name)],
    ]
    if datastore:
        cmd += ["--datastore-endpoint", datastore]
    kybern_bin = Path(sys.executable).parent / "kybern"
    if kybern_bin.exists():
        cmd = [str(kybern_bin), *cmd[3:]]
    log = open(log_path, "wb")
    env = {
        **os.environ,
        "KYBERN_WATCH_CACHE_EVENTS": str(WATCH_CACHE_EVENTS),
        "KYBERN_WATCH_BOOKMARK_SECONDS": "1",
    }
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    cluster = Cluster(data_dir, data_dir / "kubeconfig.yaml", port, base / "kubectl-cache", proc, log_path)
    deadline = time.monotonic() + 60
    import ssl
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kybern server exited ({proc.returncode}):\n{cluster.log()}")
        if cluster.kubeconfig.exists():
            try:
                ctx = ssl.create_default_context(cafile=cluster.ca_file)
                with urllib.request.urlopen(f"{cluster.url}/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return cluster
            except OSError:
                pass
        time.sleep(0.2)
    stop_cluster(cluster)
    raise RuntimeError(f"kybern server did not become ready:\n{cluster.log()}")


def stop_cluster(cluster: Cluster) -> None:
    if cluster.process.poll() is None:
        cluster.process.send_signal(signal.SIGTERM)
        try:
            cluster.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            cluster.process.kill()
            cluster.process.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="kybern-api-"))
    c = start_cluster(base)
    try:
        yield c
    finally:
        stop_cluster(c)
        log = c.log_path.read_text(errors="replace") if c.log_path.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
    # a request that ended in a 500 is logged by the server with its traceback: never acceptable
    crashes = [line for line in log.splitlines() if " apiserver " in line and " failed: " in line]
    assert not crashes, "the API server answered 500:\n" + "\n".join(crashes[:10])


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Cluster]:
    """The same server on a fresh PostgreSQL database (KYBERN_TEST_PG_URL)."""
    url = os.environ.get("KYBERN_TEST_PG_URL")
    if not url:
        reason = "KYBERN_TEST_PG_URL is not set: no PostgreSQL to run the API server on"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kybern_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = Path(tempfile.mkdtemp(prefix="kybern-api-pg-"))
    try:
        c = start_cluster(base, make_url(url).set(database=name).render_as_string(hide_password=False))
        try:
            yield c
        finally:
            stop_cluster(c)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        drop_database(admin, name)


@pytest.fixture(scope="module")
def kube_client(cluster: Cluster) -> Iterator[Any]:
    """The official Python client, configured from the kubeconfig kybern wrote."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()
        del client


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.namespace()
