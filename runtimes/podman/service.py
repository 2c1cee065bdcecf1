"""Finding a Podman REST socket that answers, or starting a ``podman system service``.

Podman 4.3 has no daemon: the REST service is a process that may or may not run. An agent
uses the configured socket, else the system socket if it answers, else starts its own on
DATA_DIR/podman/podman.sock (stopped again on close). Containers survive the service: they
belong to conmon, so a restarted agent's new service finds them in the same storage.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from kybern.runtime import RuntimeUnavailableError
from kybern.runtimes.podman import diagnose
from kybern.runtimes.podman.config import SYSTEM_SOCKET, PodmanConfig
from loguru import logger
from podman import PodmanClient

log = logger.bind(component="podman")


def socket_path(value: str) -> Path:
    return Path(value.removeprefix("unix://"))


def ping(sock: Path, timeout: float = 2.0) -> str | None:
    """None if a Podman service answers on ``sock``, else why not."""
    if not sock.exists():
        return f"no socket at {sock}"
    try:
        with PodmanClient(base_url=f"unix://{sock}", timeout=timeout) as client:
            response = client.api.get("/_ping")
            return None if response.ok else f"HTTP {response.status_code}"
    except Exception as exc:  # podman-py wraps connection errors loosely (APIError, OSError, requests')
        return diagnose.first_line(str(exc) or type(exc).__name__)


class PodmanService:
    """The socket an agent talks to, and the service process if the agent started it."""

    def __init__(self, config: PodmanConfig) -> None:
        self.config = config
        self.socket: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def ensure(self) -> Path:
        """A socket that answers; raises RuntimeUnavailableError with the fix if none can."""
        if self.socket is not None and ping(self.socket) is None:
            return self.socket
        cfg = self.config
        missing = diagnose.podman_missing(cfg.podman_binary)
        if cfg.socket:  # chosen by the operator: use it or say why not, never replace it
            sock = socket_path(cfg.socket)
            why = ping(sock)
            if why is not None:
                raise RuntimeUnavailableError(missing or diagnose.not_answering(f"unix://{sock}", why))
            self.socket = sock
            return sock
        if cfg.own_storage:
            sock = cfg.own_socket()
        else:
            why = ping(SYSTEM_SOCKET)
            if why is None:
                self.socket = SYSTEM_SOCKET
                return SYSTEM_SOCKET
            sock = cfg.own_socket()
        if ping(sock) is None:  # a service left by an earlier agent run: reuse it
            self.socket = sock
            return sock
        if missing:
            raise RuntimeUnavailableError(missing)
        self._start(sock)
        self.socket = sock
        return sock

    def _start(self, sock: Path) -> None:
        cfg = self.config
        cfg.podman_dir.mkdir(parents=True, exist_ok=True)
        if cfg.own_storage:
            (cfg.podman_dir / "networks").mkdir(parents=True, exist_ok=True)
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        env = dict(os.environ, **cfg.extra_env)
        if cfg.containers_conf:
            env["CONTAINERS_CONF"] = str(cfg.containers_conf)
        argv = [cfg.podman_binary, *cfg.global_args(), "system", "service", "--time=0", f"unix://{sock}"]
        log_path = cfg.podman_dir / "service.log"
        log.info("starting {} (log {})", " ".join(argv), log_path)
        with open(log_path, "ab") as out:
            # own session: a Ctrl-C meant for the agent must not kill the service mid-request;
            # cwd in its own dir: conmon drops files (e.g. "oom") in its working directory
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
                cwd=cfg.podman_dir,
            )
        deadline = time.monotonic() + cfg.service_start_timeout_s
        why: str | None = "not started"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                text = " ".join(tail) or f"exit code {self.process.returncode}"
                self.process = None
                raise RuntimeUnavailableError(
                    diagnose.explain(text) or f"podman system service exited: {diagnose.first_line(text)}"
                )
            why = ping(sock, timeout=1.0)
            if why is None:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeUnavailableError(diagnose.not_answering(f"unix://{sock}", why or "timeout"))

    def stop(self) -> None:
        """Stop the service if this agent started it (containers keep running)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
