"""A real image registry on loopback for pull tests: Debian's ``docker-registry`` (the
Distribution registry, installed by contrib/host-setup.sh), optionally with htpasswd basic
auth, plus helpers that build small images on the host's Podman and push them there.

Podman talks plain HTTP to it because it is on a loopback address: kybern's Podman runtime
pulls from ``localhost``/``127.0.0.1``/``[::1]`` registries with tls-verify off (see
PodmanConfig.insecure_registries), the test pushes with ``--tls-verify=false`` the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.cluster import free_port
from support.images import DEFAULT_TAG, ensure_busybox_image

REGISTRY_BINARY = "docker-registry"


def registry_problem() -> str | None:
    if shutil.which(REGISTRY_BINARY) is None:
        return "docker-registry is not installed: apt-get install docker-registry (contrib/host-setup.sh)"
    return None


def _bcrypt(password: str) -> str:
    """The registry reads bcrypt only; glibc's crypt (libxcrypt on Debian 12) makes it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt

        hashed = _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libc cannot make bcrypt hashes for the registry's htpasswd")
    return hashed


@dataclass
class Registry:
    host: str
    process: subprocess.Popen[bytes]
    log: Path
    user: tuple[str, str] | None = None
    built: list[str] = field(default_factory=list)

    def ref(self, path: str) -> str:
        return f"{self.host}/{path}"

    def push(self, source: str, path: str, creds: tuple[str, str] | None = None) -> str:
        """Push a host image to ``HOST/path``; returns the reference pods use."""
        target = self.ref(path)
        creds = creds or self.user
        args = ["podman", "push", "--quiet", "--tls-verify=false"]
        if creds:
            args += ["--creds", f"{creds[0]}:{creds[1]}"]
        out = subprocess.run([*args, source, target], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
        if out.returncode != 0:
            raise AssertionError(f"podman push {source} {target} failed: {out.stderr}")
        return target

    def build(self, work: Path, version: str) -> str:
        """A busybox image with /version holding ``version`` (distinct content, distinct ID);
        built on the host's Podman with a unique tag, removed when the registry stops."""
        base = ensure_busybox_image(DEFAULT_TAG)
        ctx = work / f"ctx-{uuid.uuid4().hex[:8]}"
        ctx.mkdir(parents=True)
        (ctx / "version").write_text(version + "\n")
        (ctx / "Containerfile").write_text(f"FROM {base}\nCOPY version /version\n")
        tag = f"localhost/kybern-pulltest-{uuid.uuid4().hex[:10]}:{version}"
        out = subprocess.run(["podman", "build", "--quiet", "-t", tag, str(ctx)], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
        if out.returncode != 0:
            raise AssertionError(f"podman build failed: {out.stderr}")
        self.built.append(tag)
        return tag


def _wait_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:  # 401 with auth: it answers
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer at {url}: {log.read_text()[-2000:]}")


@contextmanager
def running_registry(
    base: Path, user: tuple[str, str] | None = None, address: str = "127.0.0.1"
) -> Iterator[Registry]:
    """``docker-registry serve`` on ADDRESS:FREE_PORT with storage under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if user:
        htpasswd = base / "htpasswd"
        htpasswd.write_text(f"{user[0]}:{_bcrypt(user[1])}\n")
        auth = f"auth: {{htpasswd: {{realm: kybern-test, path: {htpasswd}}}}}\n"
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {base / 'storage'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{address}:{port}', secret: {uuid.uuid4().hex}}}\n" + auth
    )
    log = base / "registry.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    registry = Registry(f"{address}:{port}", process, log, user)
    try:
        _wait_answering(f"http://{address}:{port}/v2/", process, log)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if registry.built:
            subprocess.run(["podman", "rmi", "-f", *registry.built], capture_output=True,
                           stdin=subprocess.DEVNULL)  # fmt: skip
