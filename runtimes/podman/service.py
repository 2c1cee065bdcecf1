"""Finding a Podman REST socket that answers, or starting a ``podman system service``.

Podman 4.3 has no daemon: the REST service is a process that may or may not run. An agent
uses the configured socket, else the system socket if it answers, else starts its own on
DATA_DIR/podman/podman.sock (stopped again on close). Containers survive the service: they
belong to conmon, so a restarted agent's new service finds them in the same storage.

A service whose agent died without closing it (kill -9) is reused by the next agent on the
same data dir, which then owns it: its PID is in DATA_DIR/podman/service.pid, so that agent
stops it on close like one it started itself.
"""

from __future__ import annotations

import os
import signal
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


def _gone(pid: int) -> bool:
    """Exited, or a zombie its parent has not reaped yet (it is not ours to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


class PodmanService:
    """The socket an agent talks to, and the service process if the agent started it."""

    def __init__(self, config: PodmanConfig) -> None:
        self.config = config
        self.socket: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        #: PID of a service an earlier agent started and this one adopted
        self.adopted_pid: int | None = None

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
            self.adopted_pid = self._leftover_pid(sock)
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
        self._pid_file().write_text(f"{self.process.pid}\n")
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

    def _pid_file(self) -> Path:
        return self.config.podman_dir / "service.pid"

    def _leftover_pid(self, sock: Path) -> int | None:
        """The PID of the service an earlier agent started on ``sock``, if it is still that
        service (a recycled PID must not be signalled)."""
        try:
            pid = int(self._pid_file().read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if f"unix://{sock}".encode() not in cmdline or b"service" not in cmdline:
            return None
        log.info("reusing the Podman service (pid {}) an earlier agent left on {}", pid, sock)
        return pid

    def stop_leftover(self) -> bool:
        """Stop a service an agent on this data dir left running; True if there was one."""
        self.adopted_pid = self._leftover_pid(self.config.own_socket())
        found = self.adopted_pid is not None
        self._stop_adopted()
        return found

    def _stop_adopted(self) -> None:
        pid, self.adopted_pid = self.adopted_pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _gone(pid):
                time.sleep(0.05)
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._pid_file().unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the service if this agent started or adopted it (containers keep running)."""
        self._stop_adopted()
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self._pid_file().unlink(missing_ok=True)
