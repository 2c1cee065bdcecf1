"""HttpApiClient.watch on the client's own HTTP/1.1 connection.

Against a real ``kybern server`` (TLS and its local Unix socket): live events, bookmarks, a too old
resourceVersion (410 as an ERROR event), HTTP errors as ApiError, the server ending the watch at
timeoutSeconds. Against a raw asyncio server that writes the answer in pieces cut anywhere (inside
the headers, a chunk-size line, the CRLF after a chunk, an event): the framing is undone whatever
the reads bring, and a cancelled or abandoned watch closes its connection (the server sees EOF).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kybern.client import ApiError, HttpApiClient, WatchEvent
from kybern.plugins.apiserver.pki import ensure_pki
from support.cluster import API_ONLY, Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"KYBERN_WATCH_BOOKMARK_SECONDS": "0.3", "KYBERN_WATCH_CACHE_EVENTS": "20"}
    with running_server(tmp_path_factory.mktemp("watch"), *API_ONLY, env=env) as srv:
        yield srv


def _cm(name: str, value: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}}


async def _live_events(client: HttpApiClient, namespace: str) -> list[WatchEvent]:
    """Events of a watch that writes happen during; the server ends it at timeoutSeconds."""
    await client.create("namespaces", {"metadata": {"name": namespace}})
    rv = (await client.list("configmaps", namespace=namespace))["metadata"]["resourceVersion"]
    seen: list[WatchEvent] = []

    async def follow() -> None:
        async for event in client.watch("configmaps", namespace, resource_version=rv, timeout_seconds=3):
            seen.append(event)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    for i in range(5):
        await client.create("configmaps", _cm(f"c{i}"), namespace=namespace)
    await client.patch("configmaps", "c1", {"data": {"v": "2"}}, namespace=namespace)
    await client.delete("configmaps", "c2", namespace=namespace)
    await asyncio.sleep(0.8)  # quiet: bookmarks come
    await asyncio.wait_for(task, 30)  # ends by itself: the server closes the stream at the timeout
    return seen


def _check_live(seen: list[WatchEvent]) -> None:
    changes = [(e.type, e.object["metadata"]["name"]) for e in seen if e.type != "BOOKMARK"]
    assert changes == [("ADDED", f"c{i}") for i in range(5)] + [("MODIFIED", "c1"), ("DELETED", "c2")]
    modified = next(e for e in seen if e.type == "MODIFIED")
    assert modified.object["data"] == {"v": "2"} and modified.object["kind"] == "ConfigMap"
    bookmarks = [e for e in seen if e.type == "BOOKMARK"]
    assert bookmarks, [e.type for e in seen]
    assert all(int(b.object["metadata"]["resourceVersion"]) > 0 for b in bookmarks)


def test_live_events_bookmarks_and_the_server_ending_the_watch(server: Server) -> None:
    async def scenario() -> None:
        async with HttpApiClient.from_kubeconfig(server.kubeconfig) as client:
            _check_live(await _live_events(client, "live-tls"))

    asyncio.run(scenario())


def test_watch_over_the_unix_socket(server: Server) -> None:
    async def scenario() -> None:
        tls = HttpApiClient.from_kubeconfig(server.kubeconfig)
        client = HttpApiClient(tls.url, tls._token, unix_socket=server.data_dir / "apiserver.sock")
        try:
            _check_live(await _live_events(client, "live-unix"))
        finally:
            await client.close()
            await tls.close()

    asyncio.run(scenario())


def test_too_old_resource_version_and_http_errors(server: Server) -> None:
    async def scenario() -> None:
        async with HttpApiClient.from_kubeconfig(server.kubeconfig) as client:
            await client.create("namespaces", {"metadata": {"name": "old"}})
            for i in range(30):  # more than the watch cache keeps
                await client.create("configmaps", _cm(f"o{i}"), namespace="old")
            events = [e async for e in client.watch("configmaps", "old", resource_version="2")]
            assert [e.type for e in events] == ["ERROR"]
            assert events[0].object["code"] == 410 and events[0].object["reason"] == "Expired"
            with pytest.raises(ApiError) as missing:
                async for _ in client.watch("nothings", "old"):
                    pass
            assert missing.value.not_found
            stranger = HttpApiClient(client.url, "wrong-token", ssl_context=client._ssl)  # type: ignore[arg-type]
            with pytest.raises(ApiError) as denied:
                async for _ in stranger.watch("configmaps", "old"):
                    pass
            assert denied.value.code == 401
            await stranger.close()

    asyncio.run(scenario())


# --- a raw server: the answer cut into pieces anywhere -------------------------------------------


def _chunked(*payloads: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads) + b"0\r\n\r\n"


class RawServer:
    """Writes ``answer`` in ``cuts`` pieces (a pause after each), then keeps the connection open
    until the client closes it if ``hold``; records each request head and each client EOF."""

    def __init__(self, answer: bytes, cuts: list[int], hold: bool = False) -> None:
        self.answer, self.cuts, self.hold = answer, cuts, hold
        self.heads: list[bytes] = []
        self.client_gone = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        start = 0
        for cut in [*self.cuts, len(self.answer)]:
            writer.write(self.answer[start:cut])
            await writer.drain()
            await asyncio.sleep(0.02)
            start = cut
        if self.hold:
            await reader.read()  # b"" once the client closes
            self.client_gone.set()
        writer.close()


async def _raw(tmp_path: Path, server: RawServer) -> tuple[asyncio.Server, HttpApiClient]:
    pki = ensure_pki(tmp_path, [])
    ctx: ssl.SSLContext = pki.server_ssl_context()
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=ctx)
    port = srv.sockets[0].getsockname()[1]
    return srv, HttpApiClient(f"https://127.0.0.1:{port}", "raw-token", pki.ca_cert)


def _line(kind: str, name: str, rv: int) -> bytes:
    obj = {"kind": "Pod", "metadata": {"name": name, "resourceVersion": str(rv)}}
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_events_split_across_reads_anywhere(tmp_path: Path) -> None:
    a, b, c, d = (
        _line("ADDED", "a", 5),
        _line("MODIFIED", "b", 6),
        _line("BOOKMARK", "", 7),
        _line("DELETED", "d", 8),
    )
    body = _chunked(a + b, c[:10], c[10:] + d[:3], d[3:], b"\n")  # two events a chunk, one across three
    answer = HEAD + body
    # cut inside the headers, a size line, an event, the CRLF after a chunk, the last chunk
    crlf_after_first = len(HEAD) + len(b"%x\r\n" % len(a + b)) + len(a + b) + 1
    cuts = [20, len(HEAD) + 1, len(HEAD) + 30, crlf_after_first, len(answer) - 3]

    async def scenario() -> None:
        raw = RawServer(answer, sorted(set(cuts)))
        srv, client = await _raw(tmp_path, raw)
        try:
            events = [
                e
                async for e in client.watch(
                    "pods", "ns", resource_version="4", label_selector="app=x", timeout_seconds=9
                )
            ]
            assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
                ("ADDED", "a"),
                ("MODIFIED", "b"),
                ("BOOKMARK", ""),
                ("DELETED", "d"),
            ]
            request_line = raw.heads[0].split(b"\r\n")[0].decode()
            assert request_line.startswith("GET /api/v1/namespaces/ns/pods?") and request_line.endswith(
                " HTTP/1.1"
            )
            for part in ("watch=true", "resourceVersion=4", "labelSelector=app%3Dx", "timeoutSeconds=9"):
                assert part in request_line, request_line
            assert b"Authorization: Bearer raw-token" in raw.heads[0]
        finally:
            await client.close()
            srv.close()

    asyncio.run(scenario())


def test_error_status_and_malformed_lines(tmp_path: Path) -> None:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}
    gone = json.dumps(status).encode()
    answer = b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(gone),
        gone,
    )
    in_stream = HEAD + _chunked(
        b'{"type":"ERROR","object":' + gone + b"}\n", b"not json\n", b'{"type":"ODD"}\n'
    )

    async def scenario() -> None:
        srv, client = await _raw(tmp_path, RawServer(answer, [len(answer) - 5]))
        try:
            with pytest.raises(ApiError) as caught:
                async for _ in client.watch("pods", "ns"):
                    pass
            assert caught.value.code == 410 and caught.value.reason == "Expired"
        finally:
            await client.close()
            srv.close()
        srv, client = await _raw(tmp_path, RawServer(in_stream, []))
        try:
            events = [e async for e in client.watch("pods", "ns")]
            assert [e.type for e in events] == ["ERROR", "ERROR", "ODD"]
            assert events[0].object["code"] == 410
            assert events[1].object["code"] == 500 and "malformed" in events[1].object["message"]
            assert events[2].object == {}
        finally:
            await client.close()
            srv.close()

    asyncio.run(scenario())


def test_a_stream_broken_off_raises_a_client_error(tmp_path: Path) -> None:
    answer = HEAD + b"%x\r\n%s\r\n" % (len(_line("ADDED", "a", 1)), _line("ADDED", "a", 1)) + b"40\r\n{"

    async def scenario() -> None:
        srv, client = await _raw(tmp_path, RawServer(answer, []))
        seen: list[str] = []
        try:
            with pytest.raises(aiohttp.ClientError):
                async for e in client.watch("pods", "ns"):
                    seen.append(e.object["metadata"]["name"])
            assert seen == ["a"]
        finally:
            await client.close()
            srv.close()

    asyncio.run(scenario())


def test_cancelling_or_leaving_a_watch_closes_its_connection(tmp_path: Path) -> None:
    answer = HEAD + b"%x\r\n%s\r\n" % (len(_line("ADDED", "a", 1)), _line("ADDED", "a", 1))

    async def scenario() -> None:
        raw = RawServer(answer, [], hold=True)
        srv, client = await _raw(tmp_path, raw)
        got = asyncio.Event()

        async def follow() -> None:
            async for _ in client.watch("pods", "ns"):
                got.set()

        try:
            task = asyncio.create_task(follow())
            await asyncio.wait_for(got.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(raw.client_gone.wait(), 10)  # the server saw the connection close

            raw2 = RawServer(answer, [], hold=True)
            srv.close()
            srv, client = await _raw(tmp_path, raw2)
            stream = client.watch("pods", "ns")
            async for event in stream:  # type: ignore[attr-defined]
                assert event.type == "ADDED"
                break
            await stream.aclose()  # type: ignore[attr-defined]
            await asyncio.wait_for(raw2.client_gone.wait(), 10)
        finally:
            await client.close()
            srv.close()

    asyncio.run(scenario())
