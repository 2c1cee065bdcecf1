"""Proxying pod logs, exec, attach and port-forward to the streaming server of the pod's node.

Like kube-apiserver talking to a kubelet: the node's address is its ``InternalIP``, the port
its ``daemonEndpoints.kubeletEndpoint.Port``, the caller is authenticated with the node token,
and the node's serving certificate is not verified (kube's default without
``--kubelet-certificate-authority``; nodes sign their own).

Logs are copied chunk by chunk; WebSocket streams (exec, attach, port-forward) are accepted from the
client with the subprotocol it offered first that the node speaks too, and frames are pumped
both ways unchanged, so the exit-code Status on channel 3 reaches the client as the node
wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType, web
from kybern.plugins.apiserver import errors
from loguru import logger

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer

log = logger.bind(component="apiserver.nodeproxy")

DEFAULT_KUBELET_PORT = 10250
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
#: the first is kubectl's (SPDY/3.1 inside the WebSocket), the others the Python client's
PORTFORWARD_PROTOCOLS = (
    "SPDY/3.1+portforward.k8s.io",
    "v4.channel.k8s.io",
    "portforward.k8s.io",
    "channel.k8s.io",
)
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 501: "NotImplemented"}


async def node_endpoint(srv: ApiServer, node_name: str, pod: str, noun: str) -> tuple[str, int]:
    """(host for a URL, port) of the node's streaming server."""
    rt = srv.registry.lookup("", "v1", "nodes")
    node = await srv.storage.get_or_none(rt, None, node_name) if rt is not None else None
    if node is None:
        raise errors.service_unavailable(
            f"no node agent serves {noun} for pod {pod}: node {node_name} is not registered"
        )
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
    if not host:
        raise errors.bad_request(f"node {node_name} has no address")
    endpoint = (status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = int(endpoint.get("Port") or DEFAULT_KUBELET_PORT)
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return host, port


def pick_container(pod: dict[str, Any], container: str | None) -> str:
    """kube-apiserver's rule: the named container, or the only one; several need a name."""
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    names = [c.get("name") for c in spec.get("containers") or []]
    init = [c.get("name") for c in spec.get("initContainers") or []]
    ephemeral = [c.get("name") for c in spec.get("ephemeralContainers") or []]
    if container:
        if container not in names + init + ephemeral:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return container
    if len(names) == 1:
        return str(names[0])
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise errors.bad_request(message)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))


def _headers(srv: ApiServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.tokens.node}"}


def _node_error(code: int, text: str) -> errors.ApiStatusError:
    message = text.strip() or f"the node answered HTTP {code}"
    if code == 401:  # the node does not know our node token: a server-side problem
        return errors.internal(f"the node agent refused the API server's credentials: {message}")
    return errors.ApiStatusError(code, REASONS.get(code, "InternalError"), message)


async def proxy_logs(srv: ApiServer, request: web.BaseRequest, url: str) -> web.StreamResponse:
    params = [(k, v) for k, v in request.query.items() if k != "container"]
    session = _session()
    try:
        try:
            upstream = await session.get(url, params=params, headers=_headers(srv), ssl=False)
        except (aiohttp.ClientError, OSError) as exc:
            where = url.split("/containerLogs")[0]
            raise errors.internal(f"cannot reach the node agent at {where}: {exc}") from None
        try:
            if upstream.status != 200:
                raise _node_error(upstream.status, await upstream.text())
            out = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await out.prepare(request)
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            upstream.release()
    finally:
        await session.close()


def _chosen(request: web.BaseRequest, supported: tuple[str, ...]) -> tuple[list[str], str | None]:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    return offered, next((p for p in offered if p in supported), None)


async def proxy_websocket(srv: ApiServer, request: web.BaseRequest, url: str, sub: str) -> web.StreamResponse:
    supported = PORTFORWARD_PROTOCOLS if sub == "portforward" else EXEC_PROTOCOLS
    offered, protocol = _chosen(request, supported)
    ws = web.WebSocketResponse(protocols=supported, max_msg_size=0, autoping=True)
    if not ws.can_prepare(request).ok or (offered and protocol is None):
        what = "kubectl port-forward" if sub == "portforward" else sub
        raise errors.bad_request(
            f"{what}: kybern speaks only WebSocket with subprotocol {' or '.join(supported)} "
            f"(offered: {', '.join(offered) or request.headers.get('Upgrade') or 'no upgrade'}); "
            "SPDY is not supported"
        )
    session = _session()
    query = request.query_string
    target = f"{url}?{query}" if query else url
    try:
        try:
            upstream = await session.ws_connect(
                target,
                protocols=[protocol] if protocol else (),
                headers=_headers(srv),
                ssl=False,
                max_msg_size=0,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            # the node refused before upgrading: ask again without the upgrade for its message
            async with session.get(target, headers=_headers(srv), ssl=False) as plain:
                text = await plain.text()
            raise _node_error(exc.status if exc.status >= 400 else plain.status, text) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise errors.internal(f"cannot reach the node agent: {exc}") from None
        await ws.prepare(request)
        try:
            await _pump(ws, upstream)
        finally:
            await upstream.close()
            await ws.close()
        return ws
    finally:
        await session.close()


async def _pump(client: web.WebSocketResponse, node: aiohttp.ClientWebSocketResponse) -> None:
    """Frames both ways until either side closes; the other side is then closed too."""

    async def to_node() -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                await node.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await node.send_str(msg.data)
            else:
                break

    async def to_client() -> None:
        async for msg in node:
            if msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)
            else:
                break

    tasks = [asyncio.create_task(to_node()), asyncio.create_task(to_client())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                log.debug("stream proxy ended: {}", task.exception())
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
