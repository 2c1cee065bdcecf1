"""The namespace controller: deleting a namespace empties it of every kind, waits for content
that holds finalizers, then the namespace goes; the system namespaces exist from the start."""

from __future__ import annotations

import pytest
from conftest import client_for, create_namespace, kubectl_json, run, wait_for
from support.cluster import Server
from support_nodes import apply_obj, list_items

pytestmark = pytest.mark.timeout(180)


def namespaced_resources(server: Server) -> list[str]:
    out = server.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout
    return [r for r in out.split() if r]


def everything_in(server: Server, ns: str) -> dict[str, list[str]]:
    """Every object of every namespaced kind the API serves that sits in ``ns`` (listed across
    all namespaces, so a namespace that is gone cannot hide anything)."""

    async def go() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        async with client_for(server) as client:
            for res in namespaced_resources(server):
                items = (await client.list(res))["items"]
                names = [i["metadata"]["name"] for i in items if i["metadata"].get("namespace") == ns]
                if names:
                    found[res] = names
        return found

    return run(go())


def test_system_namespaces_exist_from_the_start(server: Server) -> None:
    names = {n["metadata"]["name"] for n in kubectl_json(server, "get", "namespaces")["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_deleting_a_namespace_removes_everything(server: Server) -> None:
    ns = create_namespace(server, "doomed")
    server.kubectl("create", "deployment", "web", "--image=busybox:1.36", "--replicas=2", "-n", ns)
    server.kubectl("create", "configmap", "cfg", "--from-literal=a=b", "-n", ns)
    server.kubectl("create", "secret", "generic", "s", "--from-literal=a=b", "-n", ns)
    server.kubectl("create", "service", "clusterip", "svc", "--tcp=80:80", "-n", ns)
    server.kubectl("create", "job", "once", "--image=busybox:1.36", "-n", ns)
    apply_obj(
        server,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        },
        ns,
    )
    wait_for(lambda: len(list_items(server, "pods", ns)) >= 3, what="deployment and job pods")
    assert len(everything_in(server, ns)) >= 6

    server.kubectl("delete", "namespace", ns, "--wait=false")
    # the held ConfigMap keeps the namespace Terminating, and the status says why
    cond = wait_for(
        lambda: next(
            (
                c
                for c in (kubectl_json(server, "get", "namespace", ns).get("status") or {}).get("conditions")
                or []
                if c["type"] == "NamespaceFinalizersRemaining" and c["status"] == "True"
            ),
            None,
        ),
        what="NamespaceFinalizersRemaining",
    )
    assert "example.com/hold" in cond["message"]
    namespace = kubectl_json(server, "get", "namespace", ns)
    assert namespace["status"]["phase"] == "Terminating"
    assert wait_for(lambda: set(everything_in(server, ns)) == {"configmaps"}, what="only the held configmap")

    server.kubectl(
        "patch", "configmap", "held", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    wait_for(
        lambda: server.kubectl("get", "namespace", ns, check=False).returncode != 0,
        what="namespace gone",
    )
    assert everything_in(server, ns) == {}


def test_kubectl_delete_namespace_waits_until_gone(server: Server) -> None:
    ns = create_namespace(server, "short-lived")
    server.kubectl("create", "configmap", "x", "-n", ns)
    server.kubectl("delete", "namespace", ns, "--timeout=60s", timeout=90)
    assert server.kubectl("get", "namespace", ns, check=False).returncode != 0
    assert everything_in(server, ns) == {}
