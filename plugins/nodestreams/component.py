"""The ``kubelet-streams`` component: join trust, the HTTPS listener, the Node's port."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from kybern.client import ApiClient
from kybern.components import ConfigurationError, RunContext
from kybern.plugins.nodestreams import DEFAULT_PORT
from kybern.plugins.nodestreams.join import fetch_server_ca
from kybern.plugins.nodestreams.server import StreamServer
from kybern.plugins.nodestreams.tls import ensure_serving_cert, server_context
from loguru import logger

log = logger.bind(component="kubelet-streams")

#: how often the Node's daemonEndpoints port is checked
REPUBLISH_S = 30.0


def _host_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class StreamsComponent:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._task: asyncio.Task[None] | None = None
        self._api: ApiClient | None = None

    def _node_token(self) -> str:
        config = self.ctx.config
        if config.role == "agent":
            if not config.token:
                raise ConfigurationError("kybern agent needs the node token (--token or KYBERN_TOKEN)")
            return config.token
        path = Path(config.data_dir) / "node-token"
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the node token {path}: {exc.strerror or exc}") from None

    async def _trust_server(self) -> None:
        config = self.ctx.config
        if config.role != "agent" or not config.server_url or not config.token:
            return
        if self.ctx.shared.get("ca_file") or config.extra.get("server_ca"):
            return
        path = await fetch_server_ca(config.server_url, config.token, Path(config.data_dir))
        if path is not None:
            self.ctx.shared["ca_file"] = str(path)

    async def start(self) -> None:
        await self._trust_server()
        config = self.ctx.config
        token = self._node_token()
        cert, key = await asyncio.to_thread(
            ensure_serving_cert, Path(config.data_dir), config.node_name, [_host_ip()]
        )
        app = StreamServer(self.ctx.shared, token).make_app()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        wanted = config.extra.get("kubelet_port")
        ports = [wanted] if wanted is not None else [DEFAULT_PORT, 0]
        for port in ports:
            site = web.TCPSite(self.runner, "0.0.0.0", port, ssl_context=server_context(cert, key))
            try:
                await site.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and port != ports[-1]:
                    log.info("port {} is taken (another node on this machine?): using a free one", port)
                    continue
                await self.runner.cleanup()
                self.runner = None
                raise ConfigurationError(
                    f"the streaming server cannot listen on port {port}: {exc.strerror or exc} "
                    "(choose another with --kubelet-port)"
                ) from None
            server: Any = site._server
            self.port = int(server.sockets[0].getsockname()[1])
            break
        self.ctx.shared["kubelet.streams_port"] = self.port
        self._task = asyncio.create_task(self._publish(), name="kubelet-streams-publish")
        log.info("node streaming server (logs/exec/port-forward) on port {}", self.port)

    async def _publish(self) -> None:
        """Make sure the Node shows the port. The kubelet writes it from
        ``shared["kubelet.streams_port"]`` with its status; this covers a kubelet that does not
        (its next full status write would undo it, which is why the check repeats)."""
        if self.ctx.api is None:
            return
        name = self.ctx.config.node_name
        delay = 1.0
        while True:
            try:
                if self._api is None:
                    self._api = self.ctx.api("kubelet-streams")
                node = await self._api.get("nodes", name)
                endpoint = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint")
                if (endpoint or {}).get("Port") != self.port:
                    await self._api.patch(
                        "nodes",
                        name,
                        {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}}}},
                        subresource="status",
                    )
                    log.debug("published port {} on node {}", self.port, name)
                delay = REPUBLISH_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not registered yet, API unreachable for a moment
                log.debug("publishing the streaming port on node {} failed: {}", name, exc)
                delay = min(delay * 2, 5.0)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self.ctx.shared.pop("kubelet.streams_port", None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self._api is not None:
            with contextlib.suppress(Exception):
                await self._api.close()
