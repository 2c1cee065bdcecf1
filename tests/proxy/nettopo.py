"""Test hosts for the proxy: network namespaces on a test bridge, each running busybox httpd.

Each "endpoint" namespace answers ``GET /`` with its own name, so a test can count which
endpoint served a request. Everything lives under one short random prefix and is removed by
``close()`` (also after a failure), whatever state it got to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
HTTP_PORT = 8080


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
    return out


def nft_problem() -> str | None:
    """Why these tests cannot program nftables/namespaces here, or None."""
    if os.geteuid() != 0:
        return "needs root (nftables, network namespaces)"
    for tool in ("nft", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if sh("nft", "list", "tables", check=False).returncode != 0:
        return "nft cannot list tables here"
    if not Path(BUSYBOX).exists():
        return "busybox (test endpoints' httpd) is not installed"
    return None


@dataclass
class Host:
    name: str  # namespace name, and what its httpd answers
    ip: str
    process: subprocess.Popen[bytes] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def serve_udp(self, port: int) -> subprocess.Popen[bytes]:
        """A UDP server answering every datagram with this host's name."""
        code = (
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.bind(('0.0.0.0', {port}))\n"
            f"while True:\n d, a = s.recvfrom(2048); s.sendto({self.name!r}.encode(), a)"
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.extra.append(proc)
        return proc

    def fetch(self, url: str) -> str:
        """GET from inside this namespace, as a pod would (busybox wget crashes in netns here)."""
        code = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode(), end='')"
        return self.run(sys.executable, "-c", code).stdout


@dataclass
class Topology:
    """A bridge ``<prefix>br`` with 10.99.N.1/24 and namespaces at .11, .12, ..."""

    prefix: str = field(default_factory=lambda: "kpt" + secrets.token_hex(3))
    subnet: int = field(default_factory=lambda: free_subnet())
    hosts: list[Host] = field(default_factory=list)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kybern-proxy-")))

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> str:
        return f"10.99.{self.subnet}.1"

    def open(self) -> Topology:
        remove_orphans()
        OWNERS.mkdir(parents=True, exist_ok=True)
        (OWNERS / self.prefix).write_text(str(os.getpid()))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        return self

    def add_host(self, serve: bool = True) -> Host:
        i = len(self.hosts) + 1
        host = Host(f"{self.prefix}-h{i}", f"10.99.{self.subnet}.{10 + i}")
        self.hosts.append(host)
        outer, inner = f"{self.prefix}o{i}", f"{self.prefix}i{i}"
        sh("ip", "netns", "add", host.name)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", outer, "master", self.bridge, "up")
        sh("ip", "link", "set", inner, "netns", host.name)
        host.run("ip", "link", "set", "lo", "up")
        host.run("ip", "addr", "add", f"{host.ip}/24", "dev", inner)
        host.run("ip", "link", "set", inner, "up")
        host.run("ip", "route", "add", "default", "via", self.gateway)
        if serve:
            docroot = self.root / host.name
            docroot.mkdir()
            (docroot / "index.html").write_text(host.name)
            host.process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.name,
                    BUSYBOX,
                    "httpd",
                    "-f",
                    "-p",
                    str(HTTP_PORT),
                    "-h",
                    str(docroot),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_http(f"http://{host.ip}:{HTTP_PORT}/")
        return host

    def close(self) -> None:
        for host in self.hosts:
            for proc in [host.process, *host.extra]:
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
            sh("ip", "netns", "del", host.name, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        (OWNERS / self.prefix).unlink(missing_ok=True)


#: one file per live topology (name: prefix, content: owner pid), so a run killed before its
#: finalizers (e.g. by a timeout) is cleaned up by the next one, and a concurrent run is not
OWNERS = Path(tempfile.gettempdir()) / "kybern-proxy-test-topologies"


def free_subnet() -> int:
    """A 10.99.N.0/24 that no route on this host uses (concurrent runs pick different ones)."""
    routes = sh("ip", "-4", "route").stdout
    for _ in range(200):
        n = 1 + secrets.randbelow(254)
        if f"10.99.{n}." not in routes and f"10.97.{n}." not in routes and f"10.96.{n}." not in routes:
            return n
    raise RuntimeError("no free 10.99.N.0/24 for a test topology")


def remove_orphans() -> None:
    if not OWNERS.is_dir():
        return
    for owner in OWNERS.iterdir():
        try:
            os.kill(int(owner.read_text().strip() or "0"), 0)
            continue
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError, OSError):
            continue
        prefix = owner.name
        for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
            name = ns.split(" ")[0]
            if name.startswith(f"{prefix}-h"):
                for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), 9)
                sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", f"{prefix}br", check=False)
        owner.unlink(missing_ok=True)


#: never through an HTTP proxy from the environment: test traffic stays on this host
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 5) -> str:
    """One request on a fresh connection (the proxy balances connections, not requests)."""
    with _OPENER.open(url, timeout=timeout) as resp:
        return resp.read().decode()


def wait_http(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(url, timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def udp_ask(host: str, port: int, timeout: float = 3, tries: int = 10) -> str:
    """One datagram out, the answer back (retried: the first may race the server's start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / tries)
        for _ in range(tries):
            sock.sendto(b"who", (host, port))
            try:
                return sock.recv(2048).decode()
            except TimeoutError:
                continue
    raise TimeoutError(f"no UDP answer from {host}:{port}")
