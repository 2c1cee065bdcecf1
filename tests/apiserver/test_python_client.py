"""The official ``kubernetes`` Python client, in-process, against a real kybern server."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

Cluster = Any  # tests/apiserver/conftest.py


def _status(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or None)


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def test_crud_and_status_errors(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    created = core.create_namespaced_config_map(ns, cm("a", {"k": "v"}, x="1"))
    assert created.metadata.uid and created.metadata.resource_version
    got = core.read_namespaced_config_map("a", ns)
    assert got.data == {"x": "1"}
    kubernetes_validate.validate(kube_client.sanitize_for_serialization(got), "1.32.0", strict=True)

    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map(ns, cm("a"))
    assert info.value.status == 409
    st = _status(info.value)
    assert st["reason"] == "AlreadyExists" and st["message"] == 'configmaps "a" already exists'
    assert st["kind"] == "Status" and st["details"] == {"name": "a", "kind": "configmaps"}

    with pytest.raises(ApiException) as info:
        core.read_namespaced_config_map("missing", ns)
    st = _status(info.value)
    assert info.value.status == 404 and st["message"] == 'configmaps "missing" not found'
    assert st["details"]["kind"] == "configmaps"

    stale = got.metadata.resource_version
    got.data = {"x": "2"}
    updated = core.replace_namespaced_config_map("a", ns, got)
    assert int(updated.metadata.resource_version) > int(stale)
    got.metadata.resource_version = stale
    with pytest.raises(ApiException) as info:
        core.replace_namespaced_config_map("a", ns, got)
    st = _status(info.value)
    assert info.value.status == 409 and st["reason"] == "Conflict"
    assert st["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    core.patch_namespaced_config_map("a", ns, {"data": {"y": "3"}})
    assert core.read_namespaced_config_map("a", ns).data == {"x": "2", "y": "3"}
    st = core.delete_namespaced_config_map("a", ns)  # this client version returns a plain dict
    assert (st["status"] if isinstance(st, dict) else st.status) == "Success"
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("a", ns)


def test_invalid_status_shape(kube_client: Any, ns: str) -> None:
    apps = client.AppsV1Api(kube_client)
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment(ns, deployment("bad", replicas=-1))
    st = _status(info.value)
    assert info.value.status == 422 and st["reason"] == "Invalid"
    assert st["message"] == (
        'Deployment.apps "bad" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    assert st["details"]["kind"] == "Deployment" and st["details"]["group"] == "apps"
    assert {"reason": "FieldValueInvalid", "field": "spec.replicas"}.items() <= st["details"]["causes"][
        0
    ].items()


def test_generate_name_generation_and_dry_run(kube_client: Any, ns: str) -> None:
    apps = client.AppsV1Api(kube_client)
    body = deployment("x")
    body["metadata"] = {"generateName": "web-"}
    d = apps.create_namespaced_deployment(ns, body)
    name = d.metadata.name
    assert name.startswith("web-") and len(name) == 9
    assert all(c in "bcdfghjklmnpqrstvwxz2456789" for c in name[4:])
    assert d.metadata.generation == 1
    d2 = apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": 3}})
    assert d2.metadata.generation == 2
    d3 = apps.patch_namespaced_deployment(name, ns, {"metadata": {"labels": {"a": "b"}}})
    assert d3.metadata.generation == 2
    dry = apps.create_namespaced_deployment(ns, deployment("dry"), dry_run="All")
    assert dry.metadata.name == "dry"
    with pytest.raises(ApiException) as info:
        apps.read_namespaced_deployment("dry", ns)
    assert info.value.status == 404


def test_list_pagination_and_selectors(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    for i in range(7):
        core.create_namespaced_config_map(ns, cm(f"p{i}", {"n": str(i % 2)}))
    page = core.list_namespaced_config_map(ns, limit=3)
    names = [c.metadata.name for c in page.items]
    assert names == ["p0", "p1", "p2"] and page.metadata._continue
    assert page.metadata.remaining_item_count == 4
    rv = page.metadata.resource_version
    core.create_namespaced_config_map(ns, cm("p9"))  # must not appear in later pages of this list
    while page.metadata._continue:
        page = core.list_namespaced_config_map(ns, limit=3, _continue=page.metadata._continue)
        assert page.metadata.resource_version == rv
        names += [c.metadata.name for c in page.items]
    assert names == [f"p{i}" for i in range(7)]
    odd = core.list_namespaced_config_map(ns, label_selector="n=1")
    assert [c.metadata.name for c in odd.items] == ["p1", "p3", "p5"]
    sel = core.list_namespaced_config_map(ns, label_selector="n in (0),n!=1")
    assert len(sel.items) == 4
    with pytest.raises(ApiException) as info:
        core.list_namespaced_config_map(ns, label_selector="n in (")
    assert info.value.status == 400
    with pytest.raises(ApiException) as info:
        core.list_namespaced_config_map(ns, _continue="garbage")
    assert info.value.status == 400
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert len(everywhere.items) == 8
    core.delete_collection_namespaced_config_map(ns, label_selector="n=0")
    left = sorted(c.metadata.name for c in core.list_namespaced_config_map(ns).items)
    assert left == ["p1", "p3", "p5", "p9"]


def test_read_your_writes(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    for i in range(20):
        core.create_namespaced_config_map(ns, cm(f"r{i}"))
        assert len(core.list_namespaced_config_map(ns).items) == i + 1


def test_watch_events_and_selectors(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(ns, cm("pre", {"sel": "yes"}))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    events: list[tuple[str, str]] = []

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_config_map,
            ns,
            label_selector="sel=yes",
            resource_version=rv,
            timeout_seconds=5,
        ):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) >= 4:
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    core.create_namespaced_config_map(ns, cm("w", {"sel": "yes"}))
    core.patch_namespaced_config_map("w", ns, {"data": {"a": "b"}})
    core.patch_namespaced_config_map("w", ns, {"metadata": {"labels": {"sel": "no"}}})  # leaves: DELETED
    core.create_namespaced_config_map(ns, cm("other"))  # never selected
    core.patch_namespaced_config_map("pre", ns, {"data": {"z": "1"}})
    t.join(10)
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w"), ("MODIFIED", "pre")]


def test_watch_initial_events_bookmarks_and_expired(cluster: Cluster, kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(ns, cm("one"))
    resp = core.list_namespaced_config_map(
        ns, watch=True, resource_version="0", timeout_seconds=1, _preload_content=False
    )
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "one")]
    old_rv = core.read_namespaced_config_map("one", ns).metadata.resource_version
    for i in range(110):  # more events than the server's ring keeps (tests run it with 100)
        core.patch_namespaced_config_map("one", ns, {"data": {"i": str(i)}})
    resp = core.list_namespaced_config_map(
        ns, watch=True, resource_version=old_rv, timeout_seconds=2, _preload_content=False
    )
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert lines[-1]["type"] == "ERROR" and lines[-1]["object"]["code"] == 410
    assert lines[-1]["object"]["reason"] == "Expired"
    resp = core.list_namespaced_config_map(
        ns,
        watch=True,
        allow_watch_bookmarks=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        timeout_seconds=1,
        _preload_content=False,
    )
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert lines[0]["type"] == "ADDED"
    assert lines[1]["type"] == "BOOKMARK"
    assert lines[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_pods_binding_graceful_delete_and_connect(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    created = core.create_namespaced_pod(ns, pod)
    assert created.status.phase == "Pending"
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("p", ns)
    assert info.value.status == 400 and "does not have a host assigned" in _status(info.value)["message"]
    # kube answers a binding with a Status, which this client cannot parse as V1Binding: read raw
    resp = core.create_namespaced_binding(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p"},
            "target": {"kind": "Node", "name": "n1"},
        },
        _preload_content=False,
    )
    assert resp.status == 201 and json.loads(resp.data)["status"] == "Success"
    bound = core.read_namespaced_pod("p", ns)
    assert bound.spec.node_name == "n1"
    assert [c.type for c in bound.status.conditions] == ["PodScheduled"]
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod_binding(
            "p",
            ns,
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": "p"},
                "target": {"kind": "Node", "name": "n2"},
            },
            _preload_content=False,
        )
    assert info.value.status == 409
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("p", ns)
    assert info.value.status == 503
    # scheduled pods terminate gracefully: deletionTimestamp in the future, object kept
    gone = core.delete_namespaced_pod("p", ns, grace_period_seconds=30)
    assert gone.metadata.deletion_timestamp is not None
    assert gone.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("p", ns).metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("p", ns, grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("p", ns)
    core.create_namespaced_pod(ns, {**pod, "metadata": {"name": "q"}})
    core.create_namespaced_pod_eviction(
        "q",
        ns,
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "q"}},
        _preload_content=False,
    )
    with pytest.raises(ApiException):
        core.read_namespaced_pod("q", ns)  # unscheduled: removed at once


def test_propagation_policies_and_preconditions(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    made = core.create_namespaced_config_map(ns, cm("fg"))
    with pytest.raises(ApiException) as info:
        core.delete_namespaced_config_map(
            "fg", ns, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
        )
    assert info.value.status == 409
    core.delete_namespaced_config_map(
        "fg",
        ns,
        body=client.V1DeleteOptions(
            propagation_policy="Foreground", preconditions=client.V1Preconditions(uid=made.metadata.uid)
        ),
    )
    held = core.read_namespaced_config_map("fg", ns)
    assert held.metadata.finalizers == ["foregroundDeletion"] and held.metadata.deletion_timestamp
    core.patch_namespaced_config_map("fg", ns, [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("fg", ns)
    core.create_namespaced_config_map(ns, cm("or"))
    core.delete_namespaced_config_map("or", ns, propagation_policy="Orphan")
    assert core.read_namespaced_config_map("or", ns).metadata.finalizers == ["orphan"]


def test_periodic_bookmarks(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    resp = core.list_namespaced_config_map(
        ns,
        watch=True,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
        _preload_content=False,
    )
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    marks = [e for e in lines if e["type"] == "BOOKMARK"]
    assert marks, lines  # the test server sends them every second
    assert marks[0]["object"]["kind"] == "ConfigMap" and int(
        marks[0]["object"]["metadata"]["resourceVersion"]
    ) >= int(rv)
    resp = core.list_namespaced_config_map(
        ns, watch=True, resource_version=rv, timeout_seconds=2, _preload_content=False
    )
    assert not [line for line in resp.read().splitlines() if b"BOOKMARK" in line]


def test_service_cluster_ip_and_node_port_allocation(kube_client: Any, ns: str) -> None:
    import ipaddress

    core = client.CoreV1Api(kube_client)
    k8s = core.read_namespaced_service("kubernetes", "default")
    assert k8s.spec.cluster_ip == "10.43.0.1" and k8s.spec.ports[0].port == 443
    ep = core.read_namespaced_endpoints("kubernetes", "default")
    assert ep.subsets[0].ports[0].name == "https"

    def svc(name: str, kind: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 80}], **spec},
        }

    a = core.create_namespaced_service(ns, svc("a"))
    assert ipaddress.ip_address(a.spec.cluster_ip) in ipaddress.ip_network("10.43.0.0/16")
    # the v32 client names clusterIPs `cluster_i_ps`
    assert a.to_dict()["spec"]["cluster_i_ps"] == [a.spec.cluster_ip] and a.spec.ports[0].node_port is None
    b = core.create_namespaced_service(ns, svc("b", "NodePort"))
    assert b.spec.cluster_ip != a.spec.cluster_ip and 30000 <= b.spec.ports[0].node_port <= 32767
    # a PUT that omits the allocated values keeps them
    body = svc("b", "NodePort")
    body["metadata"]["labels"] = {"x": "y"}
    b2 = core.replace_namespaced_service("b", ns, body)
    assert b2.spec.cluster_ip == b.spec.cluster_ip and b2.spec.ports[0].node_port == b.spec.ports[0].node_port
    with pytest.raises(ApiException) as info:
        core.create_namespaced_service(ns, svc("c", clusterIP=a.spec.cluster_ip))
    assert info.value.status == 422 and "already allocated" in _status(info.value)["message"]
    with pytest.raises(ApiException) as info:
        core.create_namespaced_service(ns, svc("d", clusterIP="192.168.0.1"))
    assert info.value.status == 422 and "not in the valid range" in _status(info.value)["message"]
    with pytest.raises(ApiException) as info:
        core.create_namespaced_service(
            ns, svc("e", "NodePort", ports=[{"port": 80, "nodePort": b.spec.ports[0].node_port}])
        )
    assert info.value.status == 422
    headless = core.create_namespaced_service(ns, svc("h", clusterIP="None"))
    assert headless.spec.cluster_ip == "None"


def test_dry_run_writes_change_nothing(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    made = core.create_namespaced_config_map(ns, cm("dr", x="1"))
    rv = made.metadata.resource_version
    patched = core.patch_namespaced_config_map("dr", ns, {"data": {"x": "2"}}, dry_run="All")
    assert patched.data == {"x": "2"}
    made.data = {"x": "3"}
    core.replace_namespaced_config_map("dr", ns, made, dry_run="All")
    core.delete_namespaced_config_map("dr", ns, dry_run="All")
    after = core.read_namespaced_config_map("dr", ns)
    assert after.data == {"x": "1"} and after.metadata.resource_version == rv


def test_strict_field_validation_on_patch_and_warnings(kube_client: Any, ns: str) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(ns, cm("fv"))
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map("fv", ns, {"dataz": {"a": "b"}}, field_validation="Strict")
    assert info.value.status == 400
    assert _status(info.value)["message"] == 'strict decoding error: unknown field "dataz"'
    _, code, headers = core.patch_namespaced_config_map_with_http_info(
        "fv", ns, {"dataz": {"a": "b"}}, field_validation="Warn"
    )
    assert code == 200 and 'unknown field \\"dataz\\"' in headers.get("Warning", "")
    core.patch_namespaced_config_map("fv", ns, {"dataz": {"a": "b"}}, field_validation="Ignore")
