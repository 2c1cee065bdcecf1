"""The garbage collector with the real kubectl: ``kubectl delete --cascade=background|foreground|
orphan`` on Deployment -> ReplicaSet -> Pod chains, and owners of other kinds."""

from __future__ import annotations

import pytest
from conftest import create_namespace, kubectl_json, wait_for
from support.cluster import Server
from support_nodes import apply_obj, list_items, live

pytestmark = pytest.mark.timeout(180)


def deployment(name: str, replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    }


def chain(server: Server, ns: str, name: str) -> tuple[dict, list[dict]]:
    """Create a 2-replica Deployment and wait for its ReplicaSet and pods."""
    apply_obj(server, deployment(name), ns)
    rs = wait_for(lambda: live(list_items(server, "replicasets.apps", ns, f"app={name}")), what="replicaset")
    pods = wait_for(
        lambda: (p := live(list_items(server, "pods", ns, f"app={name}"))) and len(p) == 2 and p,
        what="2 pods",
    )
    return rs[0], pods


def test_background_deletes_the_whole_chain(server: Server) -> None:
    ns = create_namespace(server, "gc-bg")
    chain(server, ns, "web")
    server.kubectl("delete", "deployment", "web", "-n", ns)  # kubectl's default: background
    wait_for(lambda: not list_items(server, "replicasets.apps", ns), what="replicasets gone")
    wait_for(lambda: not list_items(server, "pods", ns), what="pods gone")


def test_foreground_deletes_dependents_before_the_owner(server: Server) -> None:
    ns = create_namespace(server, "gc-fg")
    chain(server, ns, "web")
    # kubectl waits until the Deployment itself is gone; with Foreground that is only after the
    # ReplicaSet (blockOwnerDeletion) and, through it, the pods are gone
    server.kubectl(
        "delete", "deployment", "web", "-n", ns, "--cascade=foreground", "--timeout=60s", timeout=90
    )
    assert list_items(server, "replicasets.apps", ns) == []
    assert list_items(server, "pods", ns) == []
    assert list_items(server, "deployments.apps", ns) == []


def test_foreground_owner_waits_with_finalizer(server: Server) -> None:
    """While a blocking dependent stays (it has a finalizer of its own), the owner waits with
    deletionTimestamp and the foregroundDeletion finalizer."""
    ns = create_namespace(server, "gc-fg-wait")
    server.kubectl("create", "configmap", "owner", "-n", ns)
    owner = kubectl_json(server, "get", "configmap", "owner", "-n", ns)
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    apply_obj(
        server,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "dep", "ownerReferences": [ref], "finalizers": ["example.com/hold"]},
        },
        ns,
    )
    server.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--wait=false")
    held = wait_for(
        lambda: (
            (s := kubectl_json(server, "get", "secret", "dep", "-n", ns))["metadata"].get("deletionTimestamp")
            and s
        ),
        what="dependent being deleted",
    )
    assert held["metadata"]["finalizers"] == ["example.com/hold"]
    cm = kubectl_json(server, "get", "configmap", "owner", "-n", ns)
    assert cm["metadata"].get("deletionTimestamp")
    assert cm["metadata"]["finalizers"] == ["foregroundDeletion"]
    server.kubectl(
        "patch", "secret", "dep", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    wait_for(
        lambda: server.kubectl("get", "configmap", "owner", "-n", ns, check=False).returncode != 0,
        what="owner gone once its dependent is",
    )


def test_orphan_keeps_dependents_and_drops_the_reference(server: Server) -> None:
    ns = create_namespace(server, "gc-orphan")
    rs, pods = chain(server, ns, "web")
    server.kubectl("delete", "deployment", "web", "-n", ns, "--cascade=orphan", "--timeout=60s", timeout=90)
    assert list_items(server, "deployments.apps", ns) == []
    kept = list_items(server, "replicasets.apps", ns)
    assert [r["metadata"]["uid"] for r in kept] == [rs["metadata"]["uid"]]
    assert not kept[0]["metadata"].get("ownerReferences")
    assert "orphan" not in (kept[0]["metadata"].get("finalizers") or [])
    still = live(list_items(server, "pods", ns))
    assert sorted(p["metadata"]["uid"] for p in still) == sorted(p["metadata"]["uid"] for p in pods)
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in still)
    # the orphaned ReplicaSet still works on its own, and deleting it now takes its pods
    server.kubectl("delete", "rs", rs["metadata"]["name"], "-n", ns)
    wait_for(lambda: not list_items(server, "pods", ns), what="pods of the deleted replicaset gone")


def test_owner_of_another_kind_and_a_surviving_owner(server: Server) -> None:
    ns = create_namespace(server, "gc-kinds")
    server.kubectl("create", "configmap", "a", "-n", ns)
    server.kubectl("create", "configmap", "b", "-n", ns)
    a = kubectl_json(server, "get", "configmap", "a", "-n", ns)
    b = kubectl_json(server, "get", "configmap", "b", "-n", ns)

    def ref(obj: dict) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
        }

    apply_obj(
        server,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "one", "ownerReferences": [ref(a)]}},
        ns,
    )
    apply_obj(
        server,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "two", "ownerReferences": [ref(a), ref(b)]},
        },
        ns,
    )
    server.kubectl("delete", "configmap", "a", "-n", ns)
    wait_for(
        lambda: server.kubectl("get", "secret", "one", "-n", ns, check=False).returncode != 0,
        what="secret one (only owner gone) deleted",
    )
    # "two" still has a live owner: it stays, without the reference to the deleted one
    two = wait_for(
        lambda: (
            (s := kubectl_json(server, "get", "secret", "two", "-n", ns))
            and len(s["metadata"].get("ownerReferences") or []) == 1
            and s
        ),
        what="dangling reference removed",
    )
    assert two["metadata"]["ownerReferences"][0]["uid"] == b["metadata"]["uid"]
