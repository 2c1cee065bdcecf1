"""HttpApiClient against a small aiohttp server speaking the Kubernetes REST protocol.

The server below is deliberately tiny (an in-memory dict per resource path): it checks what
the client sends (paths, query, content types, bodies, token) and answers the shapes the
real API server answers, including paged lists, split watch chunks and non-JSON errors.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kybern.client import ApiError, HttpApiClient, resource_path, split_resource
from kybern.plugins.apiserver.auth import write_kubeconfig
from kybern.plugins.apiserver.pki import ensure_pki

TOKEN = "s3cret-token"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("pods", ("", "v1", "pods")),
        ("deployments.apps", ("apps", "v1", "deployments")),
        ("deployments.v1.apps", ("apps", "v1", "deployments")),
        ("leases.coordination.k8s.io", ("coordination.k8s.io", "v1", "leases")),
        ("pods.v1beta1.metrics.k8s.io", ("metrics.k8s.io", "v1beta1", "pods")),
        ("events.events.k8s.io", ("events.k8s.io", "v1", "events")),
    ],
)
def test_split_resource(resource: str, expected: tuple[str, str, str]) -> None:
    assert split_resource(resource) == expected


def test_resource_path() -> None:
    assert resource_path("pods") == "/api/v1/pods"
    assert resource_path("pods", "ns") == "/api/v1/namespaces/ns/pods"
    assert resource_path("pods", "ns", "p", "log") == "/api/v1/namespaces/ns/pods/p/log"
    assert resource_path("nodes", None, "n1", "status") == "/api/v1/nodes/n1/status"
    assert resource_path("deployments.apps", "ns", "d") == "/apis/apps/v1/namespaces/ns/deployments/d"
    assert resource_path("namespaces", None, "kube-system") == "/api/v1/namespaces/kube-system"


class FakeApi:
    """An in-memory API: objects by (path of collection, name); every request is recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.rv = 10
        self.watch_lines: list[bytes] = []

    def status(self, code: int, reason: str, message: str) -> web.Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        return web.json_response(body, status=code)

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
                "user_agent": request.headers.get("User-Agent"),
            }
        )
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def collection(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        store = self.objects.setdefault(path, {})
        if request.method == "POST":
            obj = await request.json()
            name = obj["metadata"]["name"]
            if name in store:
                return self.status(409, "AlreadyExists", f'"{name}" already exists')
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            store[name] = obj
            return web.json_response(obj, status=201)
        if request.query.get("watch") == "true":
            return await self.watch(request)
        items = sorted(store.values(), key=lambda o: o["metadata"]["name"])
        if "labelSelector" in request.query:
            key, _, value = request.query["labelSelector"].partition("=")
            items = [o for o in items if (o["metadata"].get("labels") or {}).get(key) == value]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0) or len(items)
        page = items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(items) - start - limit
        return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": meta, "items": page})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for chunk in self.watch_lines:
            await resp.write(chunk)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def item(self, request: web.Request) -> web.StreamResponse:
        collection, name = "/" + request.match_info["collection"], request.match_info["name"]
        if name == "plain-error":
            return web.Response(status=503, text="upstream connect error")
        if request.method == "POST" or name == "status":  # subresources: echo what was sent
            return web.json_response(await request.json(), status=201 if request.method == "POST" else 200)
        store = self.objects.setdefault(collection, {})
        obj = store.get(name)
        if obj is None:
            return self.status(404, "NotFound", f'"{name}" not found')
        if request.method == "GET":
            return web.json_response(obj)
        if request.method == "PUT":
            new = await request.json()
            if new["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                return self.status(409, "Conflict", "the object has been modified")
            self.rv += 1
            new["metadata"]["resourceVersion"] = str(self.rv)
            store[name] = new
            return web.json_response(new)
        if request.method == "PATCH":
            patch = await request.json()
            if isinstance(patch, dict):
                obj.setdefault("metadata", {}).setdefault("labels", {}).update(
                    (patch.get("metadata") or {}).get("labels") or {}
                )
            return web.json_response(obj)
        if request.method == "DELETE":
            del store[name]
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})
        return self.status(405, "MethodNotAllowed", "no")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record])
        for prefix in ("/api/{v}", "/apis/{g}/{v}"):
            for scope in ("", "/namespaces/{ns}"):
                app.router.add_route("*", f"{prefix}{scope}/{{plural}}", self.collection)
        app.router.add_route("*", "/{collection:.+}/{name}", self.item)
        return app


async def _serve(api: FakeApi, tmp_path: Path) -> tuple[web.AppRunner, str, ssl.SSLContext, Path]:
    pki = ensure_pki(tmp_path, [])
    runner = web.AppRunner(api.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_ssl_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"https://127.0.0.1:{port}", pki.server_ssl_context(), pki.ca_cert


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_crud_list_and_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        api = FakeApi()
        runner, url, _, ca = await _serve(api, tmp_path)
        client = HttpApiClient(url, TOKEN, ca, user_agent="kybern-test")
        try:
            created = await client.create(
                "configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}},
            )
            assert created["metadata"]["resourceVersion"] == "11"
            assert api.requests[-1]["path"] == "/api/v1/namespaces/ns/configmaps"
            assert api.requests[-1]["user_agent"] == "kybern-test"
            with pytest.raises(ApiError) as exc:
                await client.create("configmaps", {"metadata": {"name": "a"}}, namespace="ns")
            assert exc.value.already_exists and exc.value.status["message"] == '"a" already exists'

            got = await client.get("configmaps", "a", "ns")
            assert got["metadata"]["name"] == "a"
            with pytest.raises(ApiError) as exc:
                await client.get("configmaps", "missing", "ns")
            assert exc.value.not_found and exc.value.status["kind"] == "Status"

            got["data"] = {"k": "v"}
            updated = await client.update("configmaps", got)
            assert api.requests[-1]["method"] == "PUT"
            assert api.requests[-1]["path"] == "/api/v1/namespaces/ns/configmaps/a"
            with pytest.raises(ApiError) as exc:
                await client.update("configmaps", got)  # stale resourceVersion
            assert exc.value.conflict
            assert updated["data"] == {"k": "v"}

            for i in range(7):
                await client.create(
                    "deployments.apps",
                    {"metadata": {"name": f"d{i}", "labels": {"i": str(i % 2)}}},
                    namespace="ns",
                )
            api.requests.clear()
            listed = await client.list("deployments.apps", "ns", limit=3)
            assert [o["metadata"]["name"] for o in listed["items"]] == [f"d{i}" for i in range(7)]
            assert "continue" not in listed["metadata"] and listed["metadata"]["resourceVersion"]
            assert [r["query"].get("continue") for r in api.requests] == [None, "3", "6"]
            assert all(r["query"]["limit"] == "3" for r in api.requests)
            assert all(r["path"] == "/apis/apps/v1/namespaces/ns/deployments" for r in api.requests)
            odd = await client.list("deployments.v1.apps", "ns", label_selector="i=1")
            assert len(odd["items"]) == 3

            await client.patch("deployments.apps", "d1", {"metadata": {"labels": {"x": "y"}}}, namespace="ns")
            assert api.requests[-1]["content_type"] == "application/merge-patch+json"
            await client.patch("deployments.apps", "d1", {"spec": {}}, "strategic", namespace="ns")
            assert api.requests[-1]["content_type"] == "application/strategic-merge-patch+json"
            await client.patch(
                "deployments.apps", "d1", [{"op": "add", "path": "/x", "value": 1}], "json", "ns"
            )
            assert api.requests[-1]["content_type"] == "application/json-patch+json"
            await client.patch("deployments.apps", "d1", {"spec": {}}, "apply", "ns", field_manager="me")
            assert api.requests[-1]["content_type"] == "application/apply-patch+yaml"
            assert api.requests[-1]["query"] == {"fieldManager": "me"}
            with pytest.raises(ValueError):
                await client.patch("deployments.apps", "d1", {}, "apply", "ns")
            await client.patch("deployments.apps", "d1", {"status": {}}, namespace="ns", subresource="status")
            assert api.requests[-1]["path"] == "/apis/apps/v1/namespaces/ns/deployments/d1/status"

            await client.delete(
                "deployments.apps",
                "d1",
                "ns",
                propagation_policy="Foreground",
                grace_period_seconds=0,
                preconditions={"uid": "u1"},
            )
            assert api.requests[-1]["method"] == "DELETE"
            assert api.requests[-1]["body"] == {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "propagationPolicy": "Foreground",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u1"},
            }
            await client.create(
                "pods",
                {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}},
                namespace="ns",
                subresource="binding",
            )
            assert api.requests[-1]["path"] == "/api/v1/namespaces/ns/pods/p/binding"

            with pytest.raises(ApiError) as exc:
                await client.get("configmaps", "plain-error", "ns")
            assert exc.value.code == 503 and exc.value.reason == "ServiceUnavailable"
            assert exc.value.status["message"] == "upstream connect error"

            stranger = HttpApiClient(url, "wrong", ca)
            with pytest.raises(ApiError) as exc:
                await stranger.get("configmaps", "a", "ns")
            assert exc.value.code == 401
            await stranger.close()
            assert TOKEN not in repr(client)
        finally:
            await client.close()
            await runner.cleanup()

    run(scenario())


def test_watch_parses_split_and_large_events(tmp_path: Path) -> None:
    big = {"metadata": {"name": "big", "resourceVersion": "12"}, "data": {"blob": "x" * 300_000}}
    events = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}},
        {"type": "MODIFIED", "object": big},
        {
            "type": "BOOKMARK",
            "object": {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": "13"}},
        },
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
    ]
    stream = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    async def scenario() -> None:
        api = FakeApi()
        # cut the stream at awkward places: inside a JSON object and right after a newline
        api.watch_lines = [stream[:17], stream[17:100], stream[100:200_000], stream[200_000:]]
        runner, url, _, ca = await _serve(api, tmp_path)
        client = HttpApiClient(url, TOKEN, ca)
        try:
            got = [
                e
                async for e in client.watch(
                    "configmaps", "ns", resource_version="10", label_selector="a=b", timeout_seconds=30
                )
            ]
            assert [e.type for e in got] == ["ADDED", "MODIFIED", "BOOKMARK", "ERROR"]
            assert got[1].object == big
            assert got[3].object["code"] == 410
            query = api.requests[-1]["query"]
            assert query == {
                "watch": "true",
                "resourceVersion": "10",
                "labelSelector": "a=b",
                "timeoutSeconds": "30",
                "allowWatchBookmarks": "true",
            }
        finally:
            await client.close()
            await runner.cleanup()

    run(scenario())


def test_from_kubeconfig(tmp_path: Path) -> None:
    async def scenario() -> None:
        api = FakeApi()
        runner, url, _, ca = await _serve(api, tmp_path)
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(kubeconfig, url, ca.read_bytes(), TOKEN)
        client = HttpApiClient.from_kubeconfig(kubeconfig)
        try:
            await client.create("configmaps", {"metadata": {"name": "k"}}, namespace="default")
            assert (await client.get("configmaps", "k", "default"))["metadata"]["name"] == "k"
        finally:
            await client.close()
        # a client that trusts another CA must refuse the server
        other = ensure_pki(tmp_path / "other", [])
        write_kubeconfig(kubeconfig, url, other.ca_pem(), TOKEN)
        client = HttpApiClient.from_kubeconfig(kubeconfig)
        try:
            with pytest.raises(Exception) as exc:
                await client.get("configmaps", "k", "default")
            assert "certificate" in str(exc.value).lower() or isinstance(exc.value, ssl.SSLError)
        finally:
            await client.close()
            await runner.cleanup()

    run(scenario())


# --- against the real API server -------------------------------------------------------------


def _core_kinds_available() -> bool:
    """The live test needs ConfigMaps and Namespaces, which the resources-core plugin serves."""
    import importlib.util

    try:
        return importlib.util.find_spec("kybern.plugins.resources.core_v1") is not None
    except ModuleNotFoundError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not _core_kinds_available(), reason="the resources-core plugin (ConfigMap, Namespace) is not there yet"
)
def test_against_kybern_server(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    port = _free_port()
    data = tmp_path / "data"
    log_path = tmp_path / "server.log"
    kybern = Path(sys.executable).with_name("kybern")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                str(kybern),
                "server",
                "--disable-agent",
                "--data-dir",
                str(data),
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                str(port),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        kubeconfig = data / "kubeconfig.yaml"
        deadline = time.monotonic() + 90
        while not kubeconfig.exists():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "server wrote no kubeconfig:\n" + log_path.read_text()[-3000:]
            time.sleep(0.2)

        async def scenario() -> None:
            client = HttpApiClient.from_kubeconfig(kubeconfig)
            try:
                for _ in range(100):
                    try:
                        await client.get("namespaces", "default")
                        break
                    except (ApiError, OSError):
                        await asyncio.sleep(0.3)
                base = await client.list("configmaps", "default")
                rv = base["metadata"]["resourceVersion"]
                events: list[Any] = []

                async def collect() -> None:
                    async for event in client.watch(
                        "configmaps", "default", resource_version=rv, timeout_seconds=20
                    ):
                        events.append(event)
                        if event.type == "DELETED":
                            return

                watcher = asyncio.create_task(collect())
                await asyncio.sleep(0.3)
                for i in range(5):
                    await client.create(
                        "configmaps",
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {"name": f"c{i}", "labels": {"n": str(i % 2)}},
                            "data": {"i": str(i)},
                        },
                        namespace="default",
                    )
                with pytest.raises(ApiError) as exc:
                    await client.create(
                        "configmaps",
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c0"}},
                        namespace="default",
                    )
                assert exc.value.already_exists
                paged = await client.list("configmaps", "default", limit=2)
                assert {o["metadata"]["name"] for o in paged["items"]} >= {f"c{i}" for i in range(5)}
                odd = await client.list("configmaps", "default", label_selector="n=1")
                assert sorted(o["metadata"]["name"] for o in odd["items"]) == ["c1", "c3"]
                got = await client.get("configmaps", "c0", "default")
                got["data"]["extra"] = "yes"
                updated = await client.update("configmaps", got)
                assert updated["data"]["extra"] == "yes"
                with pytest.raises(ApiError) as exc:
                    await client.update("configmaps", got)  # stale resourceVersion
                assert exc.value.conflict
                patched = await client.patch("configmaps", "c1", {"data": {"p": "1"}}, namespace="default")
                assert patched["data"] == {"i": "1", "p": "1"}
                await client.delete("configmaps", "c0", "default")
                with pytest.raises(ApiError) as exc:
                    await client.get("configmaps", "c0", "default")
                assert exc.value.not_found
                await asyncio.wait_for(watcher, 20)
                ours = {f"c{i}" for i in range(5)}  # controllers add their own (kube-root-ca.crt)
                types = [
                    (e.type, e.object["metadata"]["name"])
                    for e in events
                    if e.type != "BOOKMARK" and e.object["metadata"]["name"] in ours
                ]
                assert types[:5] == [("ADDED", f"c{i}") for i in range(5)]
                assert ("MODIFIED", "c0") in types and types[-1] == ("DELETED", "c0")
            finally:
                await client.close()

        run(scenario())
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
