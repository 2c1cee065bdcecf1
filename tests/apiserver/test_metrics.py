"""Prometheus metrics: middleware counts real HTTP requests, /metrics parses as exposition text."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from conftest import Cluster
from kybern.plugins.apiserver.metrics import (
    ApiServerMetrics,
    get_metrics,
    metrics_handler,
    metrics_middleware,
    request_attributes,
)
from prometheus_client.parser import text_string_to_metric_families


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/pods", {}, ("LIST", "", "v1", "pods", "", "cluster")),
        (
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"watch": "true"},
            ("WATCH", "", "v1", "pods", "", "namespace"),
        ),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, ("GET", "", "v1", "pods", "log", "resource")),
        ("POST", "/api/v1/namespaces/ns/pods/p/exec", {}, ("CONNECT", "", "v1", "pods", "exec", "resource")),
        ("GET", "/api/v1/namespaces/ns", {}, ("GET", "", "v1", "namespaces", "", "resource")),
        (
            "PUT",
            "/api/v1/namespaces/ns/finalize",
            {},
            ("PUT", "", "v1", "namespaces", "finalize", "resource"),
        ),
        ("GET", "/api/v1/namespaces", {}, ("LIST", "", "v1", "namespaces", "", "cluster")),
        (
            "DELETE",
            "/apis/apps/v1/namespaces/ns/deployments",
            {},
            ("DELETECOLLECTION", "apps", "v1", "deployments", "", "namespace"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            {},
            ("PATCH", "apps", "v1", "deployments", "scale", "resource"),
        ),
        ("GET", "/healthz", {}, ("GET", "", "", "", "", "")),
    ],
)
def test_request_attributes(method: str, path: str, query: dict[str, str], expected: tuple[str, ...]) -> None:
    attrs = request_attributes(method, path, query)
    keys = ("verb", "group", "version", "resource", "subresource", "scope")
    assert tuple(attrs[k] for k in keys) == expected


async def _scrape_after_requests() -> tuple[dict, dict]:
    async def pods(request: web.Request) -> web.Response:
        return web.json_response({"kind": "PodList", "items": []})

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def build() -> web.Application:
        app = web.Application(middlewares=[metrics_middleware()])
        app.router.add_get("/api/v1/namespaces/{ns}/pods", pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", missing)
        app.router.add_get("/metrics", metrics_handler)
        return app

    results = []
    for _ in range(2):  # two servers in one process keep separate registries
        server = TestServer(await build())
        await server.start_server()
        try:
            async with ClientSession() as session:
                for _ in range(3):
                    async with session.get(server.make_url("/api/v1/namespaces/default/pods")) as resp:
                        assert resp.status == 200
                async with session.get(server.make_url("/api/v1/namespaces/default/pods/x")) as resp:
                    assert resp.status == 404
                get_metrics(server.app).watch_event("apps", "v1", "Deployment", 2)
                get_metrics(server.app).set_storage_objects("pods", 7)
                async with session.get(server.make_url("/metrics")) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    text = await resp.text()
        finally:
            await server.close()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        results.append(samples)
    return results[0], results[1]


def test_middleware_and_exposition() -> None:
    first, second = asyncio.run(_scrape_after_requests())
    for samples in (first, second):
        list_key = (
            "apiserver_request_total",
            tuple(
                sorted(
                    {
                        "verb": "LIST",
                        "group": "",
                        "version": "v1",
                        "resource": "pods",
                        "subresource": "",
                        "scope": "namespace",
                        "code": "200",
                    }.items()
                )
            ),
        )
        assert samples[list_key] == 3  # a shared registry would show 6 on the second server
        not_found = [
            v
            for (name, labels), v in samples.items()
            if name == "apiserver_request_total" and ("code", "404") in labels
        ]
        assert not_found == [1]
        counts = [
            v
            for (name, labels), v in samples.items()
            if name == "apiserver_request_duration_seconds_count" and ("verb", "LIST") in labels
        ]
        assert counts == [3]
        events = [v for (name, _), v in samples.items() if name == "apiserver_watch_events_total"]
        assert events == [2]
        assert samples[("apiserver_storage_objects", (("resource", "pods"),))] == 7
        inflight = [v for (name, _), v in samples.items() if name == "apiserver_current_inflight_requests"]
        # the scrape itself is in flight while the text is produced
        assert sorted(inflight) == [0, 1]


def test_no_created_series() -> None:
    first, _ = asyncio.run(_scrape_after_requests())
    assert not [name for name, _ in first if name.endswith("_created")]


def test_real_server_counts_requests(cluster: Cluster) -> None:
    """The API server instruments requests itself (no middleware): what kubectl sends is
    counted with kube's labels, /cacerts stays outside authentication."""
    ns = cluster.namespace()
    for i in range(3):
        cluster.kubectl("-n", ns, "create", "configmap", f"m{i}", "--from-literal=a=b")
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    samples = {
        (f.name + s.name[len(f.name) :], tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    created = [
        v
        for (name, labels), v in samples.items()
        if name == "apiserver_request_total"
        and dict(labels).get("verb") == "POST"
        and dict(labels).get("resource") == "configmaps"
        and dict(labels).get("code") == "201"
    ]
    assert created and created[0] >= 3
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    with urllib.request.urlopen(cluster.url + "/cacerts", context=ctx, timeout=10) as r:
        assert b"BEGIN CERTIFICATE" in r.read()


def test_request_histogram_buckets_are_cumulative() -> None:
    """The per-request families are plain counters turned into samples at scrape time: the
    histogram must still read as prometheus_client's own (cumulative buckets, Go-style le)."""
    metrics = ApiServerMetrics()
    scoped = ("GET", "", "v1", "pods", "", "resource")
    for seconds in (0.001, 0.03, 0.03, 0.7, 100.0):
        metrics.started(scoped, False, True)
        metrics.finished(scoped, False, True, 200, seconds)
    metrics.started(("WATCH", "", "v1", "pods", "", "cluster"), True, True)
    text = metrics.exposition().decode()
    buckets = {
        s.labels["le"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "apiserver_request_duration_seconds_bucket"
    }
    assert buckets["0.005"] == 1
    assert buckets["0.05"] == 3
    assert buckets["0.8"] == 4
    assert buckets["60.0"] == 4
    assert buckets["+Inf"] == 5
    assert list(buckets.values()) == sorted(buckets.values())
    assert 'apiserver_request_duration_seconds_count{group="",resource="pods"' in text
    assert "apiserver_request_duration_seconds_sum" in text
    assert 'apiserver_request_total{code="200",group=""' in text
    assert 'apiserver_current_inflight_requests{request_kind="readOnly"} 0.0' in text
    assert (
        'apiserver_longrunning_requests{group="",resource="pods",scope="cluster",'
        'subresource="",verb="WATCH",version="v1"} 1.0' in text
    )


def _scrape(cluster: Cluster) -> dict[str, float]:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("kybern_storage_group_commit")
    }


def test_concurrent_writes_share_group_commits(cluster: Cluster) -> None:
    """Requests that write in the same turn of the server's event loop commit in one SQLite
    transaction; each is answered (and its object readable) once that committed."""
    import ssl

    import aiohttp

    ns = cluster.namespace()
    before = _scrape(cluster)
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    headers = {"Authorization": f"Bearer {cluster.token}"}
    url = f"{cluster.url}/api/v1/namespaces/{ns}/configmaps"

    async def burst() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(ssl=ctx, limit=20)
        ) as session:

            async def create(i: int) -> tuple[int, str]:
                body = {"metadata": {"name": f"g{i}"}, "data": {"i": str(i)}}
                async with session.post(url, json=body) as r:
                    obj = await r.json()
                    return r.status, obj.get("metadata", {}).get("resourceVersion", "")

            return await asyncio.gather(*(create(i) for i in range(100)))

    results = asyncio.run(burst())
    assert [status for status, _ in results] == [201] * 100
    assert len({rv for _, rv in results}) == 100
    after = _scrape(cluster)
    writes = after["kybern_storage_group_commit_writes_total"] - before.get(
        "kybern_storage_group_commit_writes_total", 0
    )
    commits = after["kybern_storage_group_commits_total"] - before.get(
        "kybern_storage_group_commits_total", 0
    )
    assert writes >= 100
    assert commits < writes, "100 concurrent creates never shared a commit"
    listed = cluster.kjson("-n", ns, "get", "configmaps")["items"]
    mine = [c for c in listed if c["metadata"]["name"].startswith("g")]
    assert sorted(int(c["data"]["i"]) for c in mine) == list(range(100))
