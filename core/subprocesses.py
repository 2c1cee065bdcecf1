"""Control-plane components in their own OS process (``kybern component NAME``).

kube-scheduler and kube-controller-manager are separate binaries that reach the API server
with a kubeconfig; in kybern they run inside ``kybern server`` by default, where they share
the API server's interpreter lock. This module holds both ends of running one outside:

- the child's way to the API server: a kubeconfig (:func:`connection_from_kubeconfig`) or the
  data dir of a server on this machine (:func:`connection_from_data_dir`: its Unix socket and
  admin token, as the in-process components use them);
- :class:`ComponentProcess`, the server's stand-in for a component it runs as a child: it
  starts ``kybern component NAME --data-dir DIR`` once the API server serves, restarts it with
  back-off when it dies and stops it with the server;
- :class:`SupervisorLink`, the child's end of a socket pair with that stand-in: it says when
  the child's components run (the server then reports them healthy in componentstatuses)
  and stops the child when the server is gone, however the server ended.

It lives in core, not in a plugin, because the runner decides what runs where: a plugin
cannot take a component out of the server process.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kybern.components import ConfigurationError, RunContext
from loguru import logger

log = logger.bind(component="subprocesses")

#: what a server's data dir holds for local clients (the apiserver plugin writes them)
TOKEN_FILE = "token"
CA_FILE = Path("tls") / "ca.crt"
SOCKET_FILE = "apiserver.sock"
KUBECONFIG_FILE = "kubeconfig.yaml"

#: restart back-off of a child that died: doubles from MIN to MAX, back to MIN after a child
#: that ran RESET seconds (kubelet's crash-loop back-off, in seconds rather than minutes)
BACKOFF_MIN = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET = 60.0
#: how long a child gets between SIGTERM and SIGKILL when the server stops
STOP_GRACE = 10.0
#: how long a child may take to start its components before it is killed and restarted
READY_TIMEOUT = 120.0
READY = b"ready\n"


@dataclass(frozen=True)
class ApiConnection:
    """Where and how a component process reaches the API server."""

    url: str
    token: str | None
    ca_file: str | None
    #: a local server's Unix socket (same API and auth, no TCP or TLS)
    socket: str | None = None

    def publish(self, ctx: RunContext) -> None:
        """Set what the runner's api_factory reads, as the in-process API server would."""
        if self.socket:
            ctx.shared.update(api_url=self.url, api_socket=self.socket, admin_token=self.token)
        else:
            ctx.config.server_url, ctx.config.token = self.url, self.token
        if self.ca_file:
            ctx.shared["ca_file"] = self.ca_file


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"kubeconfig {path} is not YAML: {str(exc).splitlines()[0]}") from None


def _named(doc: dict[str, Any], section: str, name: str | None, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(section[:-1]) or {}
    raise ConfigurationError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def _ca_from_data(data: str, path: Path) -> str:
    """A temporary file for inline CA data (clients and the root CA publisher want a path)."""
    try:
        pem = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"kubeconfig {path}: certificate-authority-data is not base64") from None
    fd, name = tempfile.mkstemp(prefix="kybern-ca-", suffix=".crt")
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return name


def connection_from_kubeconfig(path: Path, server_url: str | None = None) -> ApiConnection:
    """The current context's server, CA and bearer token (token or tokenFile), like client-go
    reads them; relative file paths are relative to the kubeconfig's directory."""
    doc = _read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigurationError(f"kubeconfig {path} is not a kubeconfig (no mapping)")
    current = doc.get("current-context")
    if not current:
        raise ConfigurationError(f"kubeconfig {path} has no current-context")
    context = _named(doc, "contexts", current, path)
    cluster = _named(doc, "clusters", context.get("cluster"), path)
    user = _named(doc, "users", context.get("user"), path)
    url = server_url or cluster.get("server")
    if not url:
        raise ConfigurationError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")
    base = path.parent
    ca_file = None
    if cluster.get("certificate-authority-data"):
        ca_file = _ca_from_data(str(cluster["certificate-authority-data"]), path)
    elif cluster.get("certificate-authority"):
        ca_file = str(base / cluster["certificate-authority"])
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = (base / user["tokenFile"]).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read tokenFile of kubeconfig {path}: {exc.strerror}") from None
    if not token:
        raise ConfigurationError(
            f"kubeconfig {path}: user {context.get('user')!r} has no bearer token "
            "(token or tokenFile; client certificates are not supported)"
        )
    return ApiConnection(url=str(url), token=str(token), ca_file=ca_file)


def connection_from_data_dir(data_dir: Path, server_url: str | None = None) -> ApiConnection:
    """A server on this machine, reached as its in-process components reach it: its Unix socket
    (when it serves one) and admin token, else its URL (from the kubeconfig it writes there)."""
    try:
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"no kybern server in {data_dir}: cannot read its admin token ({exc.strerror or exc})"
        ) from None
    sock = data_dir / SOCKET_FILE
    url = server_url
    if url is None and (data_dir / KUBECONFIG_FILE).exists():
        url = connection_from_kubeconfig(data_dir / KUBECONFIG_FILE).url
    if url is None:
        url = "https://127.0.0.1:6443"
    ca = data_dir / CA_FILE
    return ApiConnection(
        url=url,
        token=token,
        ca_file=str(ca) if ca.exists() else None,
        socket=str(sock) if sock.is_socket() else None,
    )


def exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def component_command(log_level: str, log_format: str, *args: str) -> list[str]:
    """``kybern component ARGS`` with this interpreter (no reliance on PATH or a console script)."""
    return [
        sys.executable,
        "-m",
        "kybern.cli",
        "--log-level",
        log_level,
        "--log-format",
        log_format,
        "component",
        *args,
    ]


class ComponentProcess:
    """The server's stand-in for component ``name`` running in a child process.

    It reports the component in ``shared["running_components"]`` itself, while the child says
    it runs (the runner adds the in-process ones), and its state for health reports in
    ``shared["component_processes"][name]``.
    """

    reports_running = True

    def __init__(
        self, ctx: RunContext, name: str, args: Sequence[str] = (), grace: float = STOP_GRACE
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.args = list(args)
        self.grace = grace
        self.process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    def _argv(self, fd: int) -> list[str]:
        config = self.ctx.config
        url = self.ctx.shared.get("api_url")
        return component_command(
            config.log_level,
            config.log_format,
            self.name,
            "--data-dir",
            str(config.data_dir),
            *(["--server", url] if url else []),
            *self.args,
            "--supervisor-fd",
            str(fd),
        )

    def _state(self, state: str, message: str) -> None:
        pid = self.process.pid if self.process is not None else None
        entry = {"state": state, "message": message, "pid": pid}
        self.ctx.shared.setdefault("component_processes", {})[self.name] = entry
        running = self.ctx.shared.setdefault("running_components", set())
        if state == "ready":
            running.add(self.name)
        else:
            running.discard(self.name)

    async def start(self) -> None:
        if not self.ctx.shared.get("api_url"):
            raise ConfigurationError(f"{self.name} in its own process needs the apiserver in this one")
        self._state("starting", "its process is starting")
        self._task = asyncio.create_task(self._supervise(), name=f"{self.name} process")

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = BACKOFF_MIN
        while not self.ctx.stopping.is_set():
            began = loop.time()
            try:
                reason = await self._run_once()
            except OSError as exc:
                reason = f"could not start: {exc.strerror or exc}"
            except Exception as exc:  # a bug here must not end the supervision
                log.exception("supervising the {} process failed", self.name)
                reason = f"could not be supervised: {exc}"
            if self.ctx.stopping.is_set():
                return
            if loop.time() - began >= BACKOFF_RESET:
                delay = BACKOFF_MIN
            log.warning("{} process {}; restarting it in {:.0f}s", self.name, reason, delay)
            self._state("restarting", f"its process {reason}; restarting in {delay:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stopping.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _run_once(self) -> str:
        """Start the child, wait until it exits; what happened to it (for the log)."""
        ours, theirs = socket.socketpair()
        try:
            self.process = proc = await asyncio.create_subprocess_exec(
                *self._argv(theirs.fileno()), pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        log.info("started {} process (pid {})", self.name, proc.pid)
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=ours)
            try:
                ready = await asyncio.wait_for(reader.readline(), READY_TIMEOUT) == READY
            except TimeoutError:  # hung on start: a liveness failure, in kubelet's terms
                await self._terminate(proc)
                return f"did not start its components in {READY_TIMEOUT:.0f}s"
            if ready:
                log.info("{} runs in process {}", self.name, proc.pid)
                self._state("ready", "ok")
                await reader.read()  # EOF: the child exited (or closed its end)
            code = await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled or failed: never leave the child behind
                await self._terminate(proc)
            if writer is not None:
                writer.close()
            else:
                ours.close()
        return exit_reason(code)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.grace)
        except TimeoutError:
            log.warning("{} process {} did not stop in {:.0f}s: killing it", self.name, proc.pid, self.grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.process is not None and self.process.returncode is None:
            await self._terminate(self.process)
        self._state("stopped", "its process is stopped")


class SupervisorLink:
    """The child's end of the socket pair its server made (``--supervisor-fd``).

    Started after the child's components, it writes ``ready``; when the server's end closes
    (the server stopped, or was killed without a chance to signal) the child stops too.
    """

    def __init__(self, ctx: RunContext, fd: int) -> None:
        self.ctx = ctx
        self.fd = fd
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            sock = socket.socket(fileno=self.fd)
        except OSError as exc:
            raise ConfigurationError(f"--supervisor-fd {self.fd}: {exc.strerror or exc}") from None
        reader, self._writer = await asyncio.open_connection(sock=sock)
        self._writer.write(READY)
        await self._writer.drain()
        self._task = asyncio.create_task(self._watch(reader), name="supervisor link")

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            await reader.read()
        if not self.ctx.stopping.is_set():
            log.warning("the kybern server that started this process is gone: stopping")
            self.ctx.stopping.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()
