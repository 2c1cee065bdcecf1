"""Discovery documents: shapes from kubectl-compat.md, then the real kubectl and Python client.

kubectl reads the documents from a small aiohttp server that serves only discovery (the full
API server has its own tests); kubectl must build its RESTMapper, short names and
``api-resources`` table from them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from kybern.plugins.apiserver.auth import authenticate, ensure_tokens, write_kubeconfig
from kybern.plugins.apiserver.discovery import (
    aggregated_discovery,
    api_group_list,
    api_resource_list,
    api_versions,
    discovery_content_type,
    version_info,
)
from kybern.plugins.apiserver.pki import ensure_pki
from kybern.resources import ResourceType, Subresource


class _Obj(msgspec.Struct, kw_only=True):
    apiVersion: str | None = None


TYPES = [
    ResourceType(
        group="",
        version="v1",
        kind="Pod",
        plural="pods",
        singular="pod",
        namespaced=True,
        model=_Obj,
        short_names=("po",),
        categories=("all",),
        subresources=(
            Subresource("status"),
            Subresource("log", verbs=("get",)),
            Subresource("exec", verbs=("create", "get")),
            Subresource("binding", verbs=("create",)),
            Subresource("eviction", verbs=("create",)),
        ),
        status_subresource=True,
    ),
    ResourceType(
        group="",
        version="v1",
        kind="Node",
        plural="nodes",
        singular="node",
        namespaced=False,
        model=_Obj,
        short_names=("no",),
        subresources=(Subresource("status"),),
    ),
    ResourceType(
        group="apps",
        version="v1",
        kind="Deployment",
        plural="deployments",
        singular="deployment",
        namespaced=True,
        model=_Obj,
        short_names=("deploy",),
        categories=("all",),
        subresources=(Subresource("status"), Subresource("scale")),
    ),
    ResourceType(
        group="coordination.k8s.io",
        version="v1",
        kind="Lease",
        plural="leases",
        singular="lease",
        namespaced=True,
        model=_Obj,
    ),
    # a "virtual" group served by the API server itself, with a beta and an alpha version
    ResourceType(
        group="metrics.k8s.io",
        version="v1beta1",
        kind="PodMetrics",
        plural="pods",
        singular="",
        namespaced=True,
        model=_Obj,
        verbs=("get", "list"),
    ),
    ResourceType(
        group="metrics.k8s.io",
        version="v1alpha1",
        kind="PodMetrics",
        plural="pods",
        singular="",
        namespaced=True,
        model=_Obj,
        verbs=("get", "list"),
    ),
]


def test_version_info() -> None:
    info = version_info()
    assert (info["major"], info["minor"]) == ("1", "32")
    assert info["gitVersion"].startswith("v1.32.0")
    for key in ("gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform"):
        assert isinstance(info[key], str) and info[key]


def test_legacy_documents() -> None:
    assert api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}],
    }
    groups = api_group_list(TYPES)
    assert [g["name"] for g in groups["groups"]] == ["apps", "coordination.k8s.io", "metrics.k8s.io"]
    metrics = groups["groups"][2]
    assert metrics["preferredVersion"] == {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
    assert [v["version"] for v in metrics["versions"]] == ["v1beta1", "v1alpha1"]

    core = api_resource_list(TYPES, "", "v1")
    assert core is not None and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["namespaced"] is True
    assert by_name["pods"]["singularName"] == "pod"
    assert by_name["nodes"]["namespaced"] is False
    assert by_name["pods/log"] == {
        "name": "pods/log",
        "singularName": "",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get"],
    }
    assert by_name["pods/eviction"]["group"] == "policy" and by_name["pods/eviction"]["kind"] == "Eviction"
    assert by_name["pods/exec"]["kind"] == "PodExecOptions"
    assert by_name["pods/binding"]["kind"] == "Binding"
    apps = api_resource_list(TYPES, "apps", "v1")
    assert apps is not None
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert api_resource_list(TYPES, "apps", "v2") is None
    assert api_resource_list(TYPES, "nope", "v1") is None


def test_aggregated_shape() -> None:
    core = aggregated_discovery(TYPES, legacy=True)
    assert core["kind"] == "APIGroupDiscoveryList" and core["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert [item["metadata"]["name"] for item in core["items"]] == [""]
    version = core["items"][0]["versions"][0]
    assert version["version"] == "v1" and version["freshness"] == "Current"
    pods = next(r for r in version["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["scope"] == "Namespaced" and pods["singularResource"] == "pod"
    subs = {s["subresource"]: s for s in pods["subresources"]}
    assert subs["eviction"]["responseKind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    assert subs["status"]["responseKind"]["kind"] == "Pod"
    assert all(s["verbs"] for s in subs.values())

    named = aggregated_discovery(TYPES, legacy=False)
    assert [item["metadata"]["name"] for item in named["items"]] == [
        "apps",
        "coordination.k8s.io",
        "metrics.k8s.io",
    ]
    deploy = named["items"][0]["versions"][0]["resources"][0]
    scale = next(s for s in deploy["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    lease = named["items"][1]["versions"][0]["resources"][0]
    assert lease["scope"] == "Namespaced" and "subresources" not in lease
    for item in core["items"] + named["items"]:
        for v in item["versions"]:
            for r in v["resources"]:
                assert r["responseKind"]["kind"], r  # kubectl drops resources without it
    assert discovery_content_type() == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


# --- against the real clients --------------------------------------------------------------


def _discovery_app(tokens, aggregated: bool) -> web.Application:
    async def auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if authenticate(request.headers.get("Authorization"), tokens) is None:
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        return await handler(request)

    def wants_aggregated(request: web.Request) -> bool:
        return aggregated and "as=APIGroupDiscoveryList" in request.headers.get("Accept", "")

    async def api(request: web.Request) -> web.Response:
        if wants_aggregated(request):
            body = json.dumps(aggregated_discovery(TYPES, legacy=True))
            return web.Response(
                text=body, content_type=None, headers={"Content-Type": discovery_content_type()}
            )
        return web.json_response(api_versions(request.host))

    async def apis(request: web.Request) -> web.Response:
        if wants_aggregated(request):
            body = json.dumps(aggregated_discovery(TYPES, legacy=False))
            return web.Response(text=body, headers={"Content-Type": discovery_content_type()})
        return web.json_response(api_group_list(TYPES))

    async def group_version(request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        doc = api_resource_list(TYPES, group, request.match_info["version"])
        if doc is None:
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        return web.json_response(doc)

    async def version(request: web.Request) -> web.Response:
        return web.json_response(version_info())

    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)

    app = web.Application(middlewares=[web.middleware(auth)])
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)  # the Python client's VersionApi asks with the slash
    app.router.add_get("/api/{version}", group_version)
    app.router.add_get("/apis/{group}/{version}", group_version)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


class _ServerThread:
    """An aiohttp app on a free port in a thread of its own, so subprocesses can reach it."""

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


@pytest.fixture(scope="module", params=[True, False], ids=["aggregated", "legacy"])
def kubeconfig(request, tmp_path_factory) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("disc")
    pki = ensure_pki(data, [])
    tokens = ensure_tokens(data)
    server = _ServerThread(_discovery_app(tokens, aggregated=request.param), pki.server_ssl_context())
    server.start()
    path = data / "kubeconfig"
    write_kubeconfig(path, f"https://127.0.0.1:{server.port}", pki.ca_pem(), tokens.admin)
    yield path
    server.stop()


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_api_resources(kubeconfig: Path, tmp_path: Path) -> None:
    def kubectl(*args: str) -> str:
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    table = kubectl("api-resources", "--no-headers")
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
    assert rows["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert rows["nodes"] == ["nodes", "no", "v1", "false", "Node"]
    assert rows["leases"] == ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    assert kubectl("api-resources", "--api-group=apps", "-o", "name").split() == ["deployments.apps"]
    assert "metrics.k8s.io/v1beta1" in kubectl("api-versions").split()
    wide = kubectl("api-resources", "-o", "wide", "--no-headers")
    pods = next(line for line in wide.splitlines() if line.startswith("pods "))
    assert "create,delete,deletecollection,get,list,patch,update,watch" in pods and "all" in pods
    version = json.loads(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == version_info()["gitVersion"]
    # a short name resolves through the RESTMapper; the server has no objects, so 404 is the proof
    proc = subprocess.run(
        [
            KUBECTL,
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
            "get",
            "deploy",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "the server doesn't have a resource type" not in proc.stderr, proc.stderr
    assert "NotFound" in proc.stderr or "not found" in proc.stderr.lower(), proc.stderr


def test_python_dynamic_client(kubeconfig: Path) -> None:
    import kubernetes
    from kubernetes.dynamic import DynamicClient

    api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        dyn = DynamicClient(api_client)
        deploy = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        assert (deploy.name, deploy.namespaced, deploy.short_names) == ("deployments", True, ["deploy"])
        assert deploy.subresources["scale"].kind == "Scale"
        assert set(deploy.subresources) == {"scale", "status"}
        node = dyn.resources.get(api_version="v1", kind="Node")
        assert node.namespaced is False
        version = kubernetes.client.VersionApi(api_client).get_code()
        assert version.minor == "32"
    finally:
        api_client.close()
