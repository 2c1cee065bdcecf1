"""The HTTP side of the node's streaming server: logs, exec and attach (WebSocket channel protocol) and
port-forward (WebSocket, the Python client's protocol), for the API server to proxy.

Exec speaks kube's channel protocol: binary frames whose first byte is the channel (0 stdin,
1 stdout, 2 stderr, 3 error/status, 4 resize JSON ``{"Width","Height"}``); under v5 a frame
``[255, ch]`` closes channel ``ch`` (stdin EOF). The exit code travels as a Status on
channel 3 because that is where kubectl and the Python client look for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from kybern.plugins.nodestreams import spdy
from kybern.plugins.nodestreams.join import split_token
from kybern.runtime import ContainerRuntimeError, ContainerStatus
from loguru import logger

log = logger.bind(component="kubelet-streams")

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
PORTFORWARD_PROTOCOLS = (
    "SPDY/3.1+portforward.k8s.io",
    "v4.channel.k8s.io",
    "portforward.k8s.io",
    "channel.k8s.io",
)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def text_error(status: int, message: str) -> web.Response:
    """Errors as plain text; the API server turns them into Status objects for clients."""
    return web.Response(status=status, text=message, content_type="text/plain")


def exit_status(rc: int, command: list[str]) -> dict[str, Any]:
    """The Status on channel 3 that kubectl and the Python client read the exit code from."""
    if rc == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {rc}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]},
    }


def since_time(query: Any) -> dt.datetime | None:
    if query.get("sinceSeconds"):
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(query["sinceSeconds"]))
    if query.get("sinceTime"):
        return dt.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
    return None


class StreamServer:
    """Request handlers; ``shared`` is the process' RunContext.shared (the kubelet lives there)."""

    def __init__(self, shared: dict[str, Any], node_token: str) -> None:
        self.shared = shared
        self._secret = split_token(node_token)[1].encode()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_get("/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_post("/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_get("/attach/{ns}/{pod}/{container}", self.attach)
        app.router.add_get("/portforward/{ns}/{pod}", self.portforward)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
        given = split_token(value)[1].encode() if scheme.lower() == "bearer" else b""
        if not given or not hmac.compare_digest(given, self._secret):
            return text_error(401, "Unauthorized")
        return await handler(request)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _find(
        self, request: web.Request, container: str | None, previous: bool = False
    ) -> tuple[Any, ContainerStatus]:
        kubelet = self.shared.get("kubelet")
        if kubelet is None:
            raise web.HTTPServiceUnavailable(text="the kubelet of this node is not running")
        ns, pod = request.match_info["ns"], request.match_info["pod"]
        try:
            return await kubelet.find_container(ns, pod, container, previous)  # type: ignore[no-any-return]
        except LookupError as exc:
            message = str(exc.args[0]) if exc.args else str(exc)
            code = 404 if "not found on this node" in message else 400
            raise _http_error(code, message) from None

    # ------------------------------------------------------------------ logs

    async def logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        runtime, status = await self._find(request, request.match_info["container"], flag(q.get("previous")))
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
            since = since_time(q)
        except ValueError as exc:
            return text_error(400, f"invalid log options: {exc}")
        follow = flag(q.get("follow")) and status.state == "running"
        chunks = runtime.container_logs(
            status.id, follow=follow, tail=tail, since=since, timestamps=flag(q.get("timestamps"))
        )
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        first = True
        sent = 0
        try:
            async for chunk in chunks:
                if first:
                    await resp.prepare(request)
                    first = False
                if limit is not None:
                    chunk = chunk[: max(limit - sent, 0)]
                if chunk:
                    await resp.write(chunk)
                    sent += len(chunk)
                if limit is not None and sent >= limit:
                    break
        except ContainerRuntimeError as exc:
            if first:
                return text_error(500, str(exc))
            log.debug("log stream ended: {}", exc)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
        if first:
            await resp.prepare(request)
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ exec

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """``kubectl attach``: the container's main process, over the same channels as exec.
        Ends with a Success status when the process' output ends (it exited); the client
        leaving only detaches. Stdin reaches the process only if the container has
        ``stdin: true``, and the client closing it is passed on only with ``stdinOnce``,
        as the kubelet does (otherwise the next attach may go on writing). Podman itself
        closes the process' stdin when a stdin attach ends (see README), so that is only
        kept while the client stays."""
        q = request.query
        want_out, want_err = flag(q.get("stdout", "true")), flag(q.get("stderr", "true"))
        runtime, status = await self._find(request, request.match_info["container"])
        if status.state != "running":
            return text_error(400, f'container "{status.name}" is not running (state: {status.state})')
        attach = getattr(runtime, "attach", None)
        if attach is None:
            return text_error(501, "this node's container runtime cannot attach; use exec")
        kubelet = self.shared.get("kubelet")
        ctr = kubelet.container_spec(status.namespace, status.pod_name, status.name) if kubelet else None
        ctr = ctr or {}
        stdin = flag(q.get("stdin")) and bool(ctr.get("stdin"))
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            return text_error(400, "attach needs a WebSocket upgrade (v5 or v4.channel.k8s.io)")
        try:
            session = await attach(status.id, stdin=stdin)
        except ContainerRuntimeError as exc:
            return text_error(500, f"attach to {status.name}: {exc}")
        await ws.prepare(request)
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        reader = asyncio.create_task(
            self._exec_input(ws, session, v5, stdin=stdin, pass_eof=bool(ctr.get("stdinOnce")))
        )
        try:
            async for stream, chunk in session.output():
                channel = STDERR if stream == "stderr" and not session.tty else STDOUT
                if (channel == STDOUT and not want_out) or (channel == STDERR and not want_err):
                    continue
                await ws.send_bytes(bytes([channel]) + chunk)
            await ws.send_bytes(bytes([ERROR]) + json.dumps({"metadata": {}, "status": "Success"}).encode())
        except (ConnectionResetError, ContainerRuntimeError, RuntimeError) as exc:
            log.debug("attach stream ended early: {}", exc)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await session.close()
            await ws.close()
        return ws

    async def exec(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        command = q.getall("command", [])
        if not command:
            return text_error(400, "you must specify at least 1 command")
        tty, stdin = flag(q.get("tty")), flag(q.get("stdin"))
        want_out, want_err = flag(q.get("stdout", "true")), flag(q.get("stderr", "true"))
        runtime, status = await self._find(request, request.match_info["container"])
        if status.state != "running":
            return text_error(400, f'container "{status.name}" is not running (state: {status.state})')
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            return text_error(400, "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)")
        try:
            session = await runtime.exec(status.id, command, stdin=stdin, tty=tty)
        except ContainerRuntimeError as exc:
            return text_error(500, f"exec in {status.name}: {exc}")
        await ws.prepare(request)
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        reader = asyncio.create_task(self._exec_input(ws, session, v5))
        try:
            async for stream, chunk in session.output():
                channel = STDERR if stream == "stderr" and not tty else STDOUT
                if (channel == STDOUT and not want_out) or (channel == STDERR and not want_err):
                    continue
                await ws.send_bytes(bytes([channel]) + chunk)
            rc = await session.wait()
            await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(rc, command)).encode())
        except (ConnectionResetError, ContainerRuntimeError, RuntimeError) as exc:
            log.debug("exec stream ended early: {}", exc)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await session.close()
            await ws.close()
        return ws

    async def _exec_input(
        self, ws: web.WebSocketResponse, session: Any, v5: bool, stdin: bool = True, pass_eof: bool = True
    ) -> None:
        """Client frames to the process; the client going away ends the session."""
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                break
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN:
                if payload and stdin:
                    await session.write(payload)
            elif channel == RESIZE:
                try:
                    size = json.loads(payload or b"{}")
                    await session.resize(int(size.get("Width") or 0), int(size.get("Height") or 0))
                except (ValueError, ContainerRuntimeError) as exc:
                    log.debug("resize failed: {}", exc)
            elif channel == CLOSE and v5 and payload[:1] == bytes([STDIN]) and stdin and pass_eof:
                await session.close_stdin()
        await session.close()

    # ------------------------------------------------------------------ port-forward

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        """kube's WebSocket port-forward: for the i-th port, channel 2i carries data and 2i+1
        errors; the first frame on each is the port number (little-endian uint16)."""
        q = request.query
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        tunnel = spdy.PROTOCOL in [p.strip() for p in offered.split(",")]
        try:
            ports = [int(p) for v in q.getall("ports", []) + q.getall("port", []) for p in v.split(",") if p]
        except ValueError:
            return text_error(400, "invalid port number")
        if not tunnel and (not ports or any(not 0 < p < 65536 for p in ports)):
            return text_error(400, "port-forward needs at least one valid port (?ports=80)")
        runtime, status = await self._find(request, None)
        sandbox = next((s for s in await runtime.list_sandboxes() if s.uid == status.pod_uid), None)
        # a hostNetwork pod (network "host") listens on this machine's own addresses
        ip = "127.0.0.1" if sandbox and sandbox.network == "host" else sandbox.ip if sandbox else None
        if not ip:
            return text_error(400, f"pod {request.match_info['pod']} has no IP address")
        ws = web.WebSocketResponse(protocols=PORTFORWARD_PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            return text_error(400, "port-forward needs a WebSocket upgrade (v4.channel.k8s.io)")
        await ws.prepare(request)
        if ws.ws_protocol == spdy.PROTOCOL:  # kubectl's port-forward
            try:
                await spdy.SpdyPortForward(ws, ip, request.match_info["pod"]).run()
            finally:
                await ws.close()
            return ws
        writers: dict[int, asyncio.StreamWriter] = {}
        pumps: list[asyncio.Task[None]] = []
        for i, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await ws.send_bytes(bytes([2 * i]) + prefix)
            await ws.send_bytes(bytes([2 * i + 1]) + prefix)
            try:
                reader, writer = await asyncio.open_connection(ip, port)
            except OSError as exc:
                msg = (
                    f"error forwarding port {port} to pod {request.match_info['pod']}: {exc.strerror or exc}"
                )
                await ws.send_bytes(bytes([2 * i + 1]) + msg.encode())
                continue
            writers[i] = writer
            pumps.append(asyncio.create_task(self._pf_out(ws, reader, 2 * i)))
        done = asyncio.create_task(self._pf_in(ws, writers))
        try:
            if pumps:
                await asyncio.wait([done, asyncio.gather(*pumps)], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[list-item]
        finally:
            for task in [done, *pumps]:
                task.cancel()
            for writer in writers.values():
                writer.close()
            await ws.close()
        return ws

    async def _pf_out(self, ws: web.WebSocketResponse, reader: asyncio.StreamReader, channel: int) -> None:
        while chunk := await reader.read(65536):
            await ws.send_bytes(bytes([channel]) + chunk)

    async def _pf_in(self, ws: web.WebSocketResponse, writers: dict[int, asyncio.StreamWriter]) -> None:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if len(data) < 2 or data[0] % 2:
                continue
            writer = writers.get(data[0] // 2)
            if writer is not None:
                writer.write(data[1:])
                await writer.drain()


def _http_error(code: int, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}.get(code, web.HTTPInternalServerError)
    return cls(text=message, content_type="text/plain")
