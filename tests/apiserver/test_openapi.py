"""OpenAPI v3 documents: valid OpenAPI 3.0, and what kubectl explain / --validate=strict need.

The kubectl checks run against a small aiohttp server that serves discovery and these
documents and records the create requests kubectl sends (the full API server has its own
end-to-end tests).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from kybern.plugins.apiserver.auth import ensure_tokens, write_kubeconfig
from kybern.plugins.apiserver.discovery import (
    aggregated_discovery,
    api_resource_list,
    discovery_content_type,
    version_info,
)
from kybern.plugins.apiserver.openapi import (
    openapi_v3_document,
    openapi_v3_document_bytes,
    openapi_v3_hash,
    openapi_v3_index,
)
from kybern.plugins.apiserver.pki import ensure_pki
from kybern.resources import ResourceType, Subresource


class _Obj(msgspec.Struct, kw_only=True):
    apiVersion: str | None = None


def _rt(group: str, kind: str, plural: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType(
        group=group,
        version=kw.pop("version", "v1"),
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        model=_Obj,
        **kw,
    )


TYPES = [
    _rt(
        "",
        "Pod",
        "pods",
        short_names=("po",),
        subresources=(
            Subresource("status"),
            Subresource("log", verbs=("get",)),
            Subresource("exec", verbs=("create", "get")),
            Subresource("binding", verbs=("create",)),
            Subresource("eviction", verbs=("create",)),
        ),
    ),
    _rt(
        "",
        "Namespace",
        "namespaces",
        namespaced=False,
        short_names=("ns",),
        subresources=(Subresource("status"),),
    ),
    _rt("", "ConfigMap", "configmaps", short_names=("cm",)),
    _rt(
        "apps",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        subresources=(Subresource("status"), Subresource("scale")),
    ),
    _rt("coordination.k8s.io", "Lease", "leases"),
    _rt("metrics.k8s.io", "PodMetrics", "pods", version="v1beta1", verbs=("get", "list")),
]


def test_index_hashes_are_stable_and_pinned() -> None:
    index = openapi_v3_index(TYPES)
    assert {"api", "apis", "api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1"} <= set(index["paths"])
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url == f"/openapi/v3/apis/apps/v1?hash={openapi_v3_hash(TYPES, 'apis/apps/v1')}"
    # a document depends only on its group-version's types: equal types give an equal hash
    apps_only = [rt for rt in TYPES if rt.group == "apps"]
    assert openapi_v3_index(apps_only)["paths"]["apis/apps/v1"] == index["paths"]["apis/apps/v1"]
    no_scale = [_rt("apps", "Deployment", "deployments", subresources=(Subresource("status"),))]
    assert openapi_v3_index(no_scale)["paths"]["apis/apps/v1"] != index["paths"]["apis/apps/v1"]
    assert openapi_v3_index(list(TYPES)) == index
    body = openapi_v3_document_bytes(TYPES, "apis/apps/v1")
    assert body is not None and json.loads(body) == openapi_v3_document(TYPES, "/apis/apps/v1/")
    assert openapi_v3_document(TYPES, "apis/apps/v2") is None
    assert openapi_v3_document(TYPES, "apis/nothing/v1") is None
    assert openapi_v3_document(TYPES, "bogus") is None


@pytest.mark.parametrize(
    "path", ["api", "apis", "api/v1", "apis/apps", "apis/apps/v1", "apis/metrics.k8s.io/v1beta1"]
)
def test_documents_are_valid_openapi3(path: str) -> None:
    from openapi_spec_validator import validate

    doc = openapi_v3_document(TYPES, path)
    assert doc is not None and doc["openapi"].startswith("3.0")
    validate(doc)
    text = json.dumps(doc)
    assert "#/$defs/" not in text and '"null"' not in text
    # every reference resolves inside the document
    schemas = doc["components"]["schemas"]
    for ref in set(_refs(doc)):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_operations_carry_what_kubectl_checks() -> None:
    doc = openapi_v3_document(TYPES, "apis/apps/v1")
    assert doc is not None
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    assert patch["x-kubernetes-action"] == "patch"
    assert {p["name"] for p in patch["parameters"]} >= {"fieldValidation", "dryRun", "fieldManager", "force"}
    assert all(p["in"] == "query" for p in patch["parameters"])
    assert set(patch["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    }
    assert {m for m in item if m != "parameters"} == {"get", "put", "patch", "delete"}
    collection = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert collection["post"]["operationId"] == "createAppsV1NamespacedDeployment"
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
    }
    schemas = doc["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert deployment["type"] == "object"
    assert deployment["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}
    ]
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    labels = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}

    core = openapi_v3_document(TYPES, "api/v1")
    assert core is not None
    assert "/api/v1/namespaces/{name}" in core["paths"]
    assert "/api/v1/pods" in core["paths"]  # list across namespaces
    evict = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
    assert evict["x-kubernetes-group-version-kind"]["kind"] == "Eviction"
    assert (
        core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["get"]["x-kubernetes-action"]
        == "connect"
    )
    metrics = openapi_v3_document(TYPES, "apis/metrics.k8s.io/v1beta1")
    assert metrics is not None
    assert "patch" not in metrics["paths"]["/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"]


# --- with the real kubectl ------------------------------------------------------------------


def _app(tokens, seen: list[dict[str, Any]]) -> web.Application:  # type: ignore[no-untyped-def]
    def status(code: int, reason: str, message: str) -> web.Response:
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

    async def api(request: web.Request) -> web.Response:
        legacy = request.path == "/api"
        return web.Response(
            text=json.dumps(aggregated_discovery(TYPES, legacy=legacy)),
            headers={"Content-Type": discovery_content_type()},
        )

    async def group_version(request: web.Request) -> web.Response:
        doc = api_resource_list(TYPES, request.match_info.get("group", ""), request.match_info["version"])
        return web.json_response(doc) if doc else status(404, "NotFound", "not found")

    async def openapi_index(request: web.Request) -> web.Response:
        return web.json_response(openapi_v3_index(TYPES))

    async def openapi_doc(request: web.Request) -> web.Response:
        body = openapi_v3_document_bytes(TYPES, request.match_info["path"])
        if body is None:
            return status(404, "NotFound", "not found")
        return web.Response(body=body, content_type="application/json")

    async def get_deployment(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return status(404, "NotFound", f'deployments.apps "{name}" not found')

    async def create_deployment(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"query": dict(request.query), "body": body})
        body.setdefault("metadata", {}).update(
            {"namespace": request.match_info["ns"], "resourceVersion": "1"}
        )
        return web.json_response(body, status=201)

    async def version(request: web.Request) -> web.Response:
        return web.json_response(version_info())

    app = web.Application()
    app.router.add_get("/api", api)
    app.router.add_get("/apis", api)
    app.router.add_get("/version", version)
    app.router.add_get("/api/{version}", group_version)
    app.router.add_get("/apis/{group}/{version}", group_version)
    app.router.add_get("/openapi/v3", openapi_index)
    app.router.add_get("/openapi/v3/{path:.+}", openapi_doc)
    app.router.add_get("/apis/apps/v1/namespaces/{ns}/deployments/{name}", get_deployment)
    app.router.add_post("/apis/apps/v1/namespaces/{ns}/deployments", create_deployment)
    return app


class _ServerThread:
    def __init__(self, app: web.Application, ssl_context) -> None:  # type: ignore[no-untyped-def]
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.port = 0
        self._ssl = ssl_context
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Path, list[dict[str, Any]]]]:  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("openapi")
    pki = ensure_pki(data, [])
    tokens = ensure_tokens(data)
    seen: list[dict[str, Any]] = []
    server = _ServerThread(_app(tokens, seen), pki.server_ssl_context())
    server.start()
    path = data / "kubeconfig"
    write_kubeconfig(path, f"https://127.0.0.1:{server.port}", pki.ca_pem(), tokens.admin)
    yield path, seen
    server.stop()


def _kubectl(
    kubeconfig: Path, cache: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_explain(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kubeconfig, _ = served
    proc = _kubectl(kubeconfig, tmp_path, "explain", "deployment.spec.strategy")
    assert proc.returncode == 0, proc.stderr
    assert "KIND:       Deployment" in proc.stdout
    assert "GROUP:      apps" in proc.stdout
    assert "DeploymentStrategy describes how to replace existing pods with new ones." in proc.stdout
    assert "rollingUpdate\t<RollingUpdateDeployment>" in proc.stdout
    proc = _kubectl(kubeconfig, tmp_path, "explain", "pods.spec.containers.ports", "--recursive")
    assert proc.returncode == 0, proc.stderr
    assert "containerPort\t<integer> -required-" in proc.stdout
    proc = _kubectl(kubeconfig, tmp_path, "explain", "cm")
    assert proc.returncode == 0, proc.stderr
    assert "ConfigMap holds configuration data for pods to consume." in proc.stdout


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_create_validates_strict_on_the_server(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kubeconfig, seen = served
    manifest = json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                },
            },
        }
    )
    seen.clear()
    proc = _kubectl(kubeconfig, tmp_path, "-n", "default", "create", "-f", "-", stdin=manifest)
    assert proc.returncode == 0, proc.stderr
    assert "deployment.apps/web created" in proc.stdout
    assert seen and seen[-1]["query"].get("fieldValidation") == "Strict", seen
    seen.clear()
    proc = _kubectl(kubeconfig, tmp_path, "-n", "default", "apply", "-f", "-", stdin=manifest)
    assert proc.returncode == 0, proc.stderr
    assert seen and seen[-1]["query"].get("fieldValidation") == "Strict", seen
    annotations = seen[-1]["body"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations
