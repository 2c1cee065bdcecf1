"""HttpApiClient's request path: HTTP/1.1 on kept-alive connections, parsed by the client itself.

A real aiohttp server (TLS, or a Unix socket) answers in the shapes the transport must read:
Content-Length and chunked bodies, ``Connection: close``, idle connections the server closes,
empty answers. Each connection the server accepts is counted, so reuse is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kybern.client import ApiError, HttpApiClient
from kybern.plugins.apiserver.pki import ensure_pki

TOKEN = "transport-token"


class Server:
    """Answers by path; records each request's connection (the peer's port) and headers."""

    def __init__(self) -> None:
        self.peers: list[int] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if isinstance(peer, tuple) else id(request.transport))
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        name = request.match_info["name"]
        if name == "chunked":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            body = json.dumps({"kind": "Thing", "items": list(range(2000))}).encode()
            for i in range(0, len(body), 777):
                await resp.write(body[i : i + 777])
            await resp.write_eof()
            return resp
        if name == "close":
            return web.json_response({"closed": True}, headers={"Connection": "close"})
        if name == "empty":
            return web.Response(status=204)
        if name == "missing":
            body = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "nothing here"}
            return web.json_response(body, status=404)
        if name == "plain":
            return web.Response(status=503, text="upstream connect error")
        if name == "slow":
            await asyncio.sleep(5)
        sent = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "query": dict(request.query),
                "body": json.loads(sent) if sent else None,
            }
        )

    async def collection(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        meta = {"resourceVersion": "7"}
        return web.json_response({"method": request.method, "metadata": meta, "items": [dict(request.query)]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/v1/namespaces/ns/things/{name}", self.handle)
        app.router.add_route("*", "/api/v1/namespaces/ns/things", self.collection)
        return app


async def _serve(
    server: Server, tmp_path: Path, keepalive: float = 75.0
) -> tuple[web.AppRunner, HttpApiClient]:
    pki = ensure_pki(tmp_path, [])
    runner = web.AppRunner(server.app(), keepalive_timeout=keepalive)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_ssl_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, HttpApiClient(f"https://127.0.0.1:{port}", TOKEN, pki.ca_cert)


@asynccontextmanager
async def _served(server: Server, tmp_path: Path, keepalive: float = 75.0) -> AsyncIterator[HttpApiClient]:
    """A client of ``server`` (see _serve), both closed when the block ends."""
    runner, client = await _serve(server, tmp_path, keepalive)
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


def test_requests_share_one_kept_alive_connection_and_send_the_headers(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Server()
        async with _served(server, tmp_path) as client:
            for i in range(5):
                got = await client.patch("things", "x", {"n": i}, namespace="ns", subresource=None)
                assert got == {"method": "PATCH", "query": {}, "body": {"n": i}}
            got = await client.list("things", namespace="ns", field_selector="spec.nodeName!=", limit=3)
            assert got["items"] == [{"fieldSelector": "spec.nodeName!=", "limit": "3"}]
            assert len(set(server.peers)) == 1, server.peers  # one connection for all six
            sent = server.headers[0]
            assert sent["Content-Type"] == "application/merge-patch+json"
            assert sent["Accept"] == "application/json" and sent["User-Agent"] == "kybern"
            assert int(sent["Content-Length"]) == len(b'{"n":0}')

    asyncio.run(scenario())


def test_query_parameters_arrive_decoded(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Server()
        async with _served(server, tmp_path) as client:
            got = await client._request(
                "GET", "/api/v1/namespaces/ns/things/q", params={"fieldSelector": "spec.nodeName!=a b&c"}
            )
            assert got["query"] == {"fieldSelector": "spec.nodeName!=a b&c"}

    asyncio.run(scenario())


def test_chunked_empty_and_error_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Server()
        async with _served(server, tmp_path) as client:
            got = await client.get("things", "chunked", namespace="ns")
            assert got["items"] == list(range(2000))
            assert await client.get("things", "empty", namespace="ns") == {}
            with pytest.raises(ApiError) as missing:
                await client.get("things", "missing", namespace="ns")
            assert missing.value.not_found and "nothing here" in str(missing.value)
            with pytest.raises(ApiError) as plain:
                await client.get("things", "plain", namespace="ns")
            assert plain.value.code == 503 and plain.value.status["message"] == "upstream connect error"
            # the connection survived all of these
            assert (await client.get("things", "after", namespace="ns"))["method"] == "GET"
            assert len(set(server.peers)) == 1, server.peers

    asyncio.run(scenario())


def test_connection_close_and_idle_connections_the_server_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Server()
        async with _served(server, tmp_path, keepalive=0.2) as client:
            assert await client.get("things", "close", namespace="ns") == {"closed": True}
            assert (await client.get("things", "next", namespace="ns"))["method"] == "GET"
            assert server.peers[0] != server.peers[1]  # the closed connection was not reused
            await asyncio.sleep(0.6)  # the server drops the idle connection
            got = await client.create("things", {"metadata": {"name": "n"}}, namespace="ns", subresource=None)
            assert got["method"] == "POST"  # not a closed-connection error
            assert await client.get("things", "more", namespace="ns")

    asyncio.run(scenario())


def test_concurrent_requests_and_a_client_used_from_two_event_loops(tmp_path: Path) -> None:
    server = Server()
    holder: dict[str, Any] = {}

    async def first() -> None:
        holder["runner"], holder["client"] = await _serve(server, tmp_path)
        client: HttpApiClient = holder["client"]
        got = await asyncio.gather(*(client.get("things", f"c{i}", namespace="ns") for i in range(30)))
        assert [g["method"] for g in got] == ["GET"] * 30
        await holder["runner"].cleanup()

    asyncio.run(first())

    async def second() -> None:
        runner, _ = await _serve(server, tmp_path)
        client: HttpApiClient = holder["client"]
        # same client object, new loop and new server port: it must not reuse the old loop's sockets
        client._transport._port = runner.addresses[0][1]
        assert (await client.get("things", "again", namespace="ns"))["method"] == "GET"
        await client.close()
        await runner.cleanup()

    asyncio.run(second())


def test_refused_connection_is_an_os_and_client_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        client = HttpApiClient(f"https://127.0.0.1:{port}", TOKEN)
        try:
            with pytest.raises(aiohttp.ClientError) as caught:
                await client.get("things", "x", namespace="ns")
            assert isinstance(caught.value, OSError)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_unix_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Server()
        runner = web.AppRunner(server.app())
        await runner.setup()
        path = tmp_path / "api.sock"
        site = web.UnixSite(runner, str(path))
        await site.start()
        client = HttpApiClient("https://127.0.0.1:1", TOKEN, unix_socket=path)
        try:
            assert (await client.get("things", "u", namespace="ns"))["method"] == "GET"
            assert (await client.get("things", "chunked", namespace="ns"))["items"][-1] == 1999
            assert server.headers[0]["Host"] == "localhost"
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_an_answer_that_does_not_come_times_out_on_a_kept_alive_connection_too(tmp_path: Path) -> None:
    """A request whose answer does not come fails with TimeoutError in about the request
    timeout, on a new connection as on a kept-alive one; its connection is dropped (the late
    answer must not be read as the next request's) and the next request works."""

    async def scenario() -> None:
        server = Server()
        runner, plain = await _serve(server, tmp_path)
        await plain.close()
        client = HttpApiClient(plain.url, TOKEN, tmp_path / "tls" / "ca.crt", request_timeout=0.5)
        try:
            for kept_alive in (False, True):
                if kept_alive:
                    assert await client.get("things", "warm", namespace="ns")
                    assert client._transport._idle, "a kept-alive connection to send on"
                else:
                    assert not client._transport._idle
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await client.get("things", "slow", namespace="ns")
                assert 0.4 < time.monotonic() - started < 2.0
                assert not client._transport._idle, "the timed-out connection is not kept"
                before = len(server.peers)
                assert (await client.get("things", "after", namespace="ns"))["method"] == "GET"
                assert server.peers[before] != server.peers[before - 1]  # on a new connection
                await client.close()
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(scenario())
