"""Namespace, Node, ConfigMap, Secret, ServiceAccount, Event, PV, PVC, Lease and EndpointSlice."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kybern.plugins.resources.coordination_v1 import LEASES
from kybern.plugins.resources.core_v1 import (
    CONFIG_MAPS,
    EVENTS,
    NAMESPACES,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from kybern.plugins.resources.discovery_v1 import ENDPOINT_SLICES

from .helpers import decode, defaulted, errors, row, valid_defaulted


def obj(
    kind: str, name: str = "x", namespace: str | None = "default", api_version: str = "v1", **body: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- Namespace


def test_namespace() -> None:
    out = valid_defaulted(NAMESPACES, obj("Namespace", "team-a", None))
    assert out["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert out["spec"] == {"finalizers": ["kubernetes"]}
    assert out["status"] == {"phase": "Active"}
    assert row(NAMESPACES, out) == ["team-a", "Active", "<unknown>"]
    assert NAMESPACES.field_selectors["status.phase"](decode(NAMESPACES, out)) == "Active"
    bad = defaulted(NAMESPACES, obj("Namespace", "ns", None, spec={"finalizers": ["custom"]}))
    assert errors(NAMESPACES, bad) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is '
        "it fully qualified"
    ]
    assert "deletecollection" not in NAMESPACES.verbs


# --------------------------------------------------------------------------- Node


def node(**extra: Any) -> dict[str, Any]:
    return obj("Node", "node-1", None, **extra)


def test_node() -> None:
    body = node(
        metadata={
            "name": "node-1",
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"},
        },
        spec={"unschedulable": True},
        status={
            "capacity": {"cpu": "4", "memory": "8192Mi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "v1.32.0",
                "osImage": "Debian",
                "kernelVersion": "6.1",
                "containerRuntimeVersion": "podman://5.0",
                "machineID": "m",
                "systemUUID": "s",
                "bootID": "b",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    )
    out = valid_defaulted(NODES, body)
    assert out["status"]["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    assert out["status"]["allocatable"] == out["status"]["capacity"]
    assert row(NODES, out) == [
        "node-1", "Ready,SchedulingDisabled", "control-plane,edge", "<unknown>", "v1.32.0",
        "192.168.1.5", "<none>", "Debian", "6.1", "podman://5.0",
    ]  # fmt: skip
    assert NODES.field_selectors["spec.unschedulable"](decode(NODES, out)) == "true"
    assert row(NODES, node())[1:3] == ["Unknown", "<none>"]
    tainted = node(
        spec={
            "taints": [
                {"key": "k", "effect": "Sometimes"},
                {"key": "k", "effect": "NoSchedule"},
                {"key": "k", "effect": "NoSchedule"},
            ]
        }
    )
    assert errors(NODES, tainted) == [
        'spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"',
        'spec.taints[2]: Duplicate value: "k:NoSchedule"',
    ]


# --------------------------------------------------------------------------- ConfigMap / Secret / SA


def test_config_map() -> None:
    cm = obj("ConfigMap", data={"a.conf": "x", "b": "y"}, binaryData={"c": b64("z")})
    assert errors(CONFIG_MAPS, cm) == []
    kubernetes_ok = defaulted(CONFIG_MAPS, cm)
    assert row(CONFIG_MAPS, kubernetes_ok) == ["x", 3, "<unknown>"]
    bad = obj("ConfigMap", data={"bad key": "x", "c": "y"}, binaryData={"c": b64("z")})
    assert errors(CONFIG_MAPS, bad) == [
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric '
        "characters, '-', "
        "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')",
        'data[c]: Invalid value: "c": duplicate of key present in binaryData',
    ]
    big = obj("ConfigMap", data={"a": "x" * (1024 * 1024 + 1)})
    assert errors(CONFIG_MAPS, big) == [": Too long: must have at most 1048576 bytes"]
    frozen = obj("ConfigMap", data={"a": "1"}, immutable=True)
    changed = copy.deepcopy(frozen)
    changed["data"]["a"] = "2"
    assert errors(CONFIG_MAPS, changed, frozen) == [
        "data: Forbidden: field is immutable when `immutable` is set"
    ]


def test_secret() -> None:
    out = valid_defaulted(SECRETS, obj("Secret", data={"user": b64("admin")}, stringData={"pass": "s3cret"}))
    assert out["type"] == "Opaque"
    assert out["data"] == {"user": b64("admin"), "pass": b64("s3cret")}
    assert "stringData" not in out
    assert row(SECRETS, out) == ["x", "Opaque", 2, "<unknown>"]
    assert SECRETS.field_selectors["type"](decode(SECRETS, out)) == "Opaque"
    tls = defaulted(SECRETS, obj("Secret", type="kubernetes.io/tls", data={"tls.crt": b64("c")}))
    assert errors(SECRETS, tls) == ["data[tls.key]: Required value"]
    garbage = defaulted(SECRETS, obj("Secret", data={"k": "not base64!"}))
    assert errors(SECRETS, garbage) == [
        'data[k]: Invalid value: "<secret contents redacted>": illegal base64 data'
    ]
    retyped = copy.deepcopy(out)
    retyped["type"] = "kubernetes.io/basic-auth"
    retyped["data"] = {"username": b64("u")}
    assert errors(SECRETS, retyped, out) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'
    ]


def test_service_account() -> None:
    sa = obj("ServiceAccount", "default", secrets=[{"name": "tok"}])
    assert row(SERVICE_ACCOUNTS, sa) == ["default", 1, "<unknown>"]
    assert SERVICE_ACCOUNTS.short_names == ("sa",)


# --------------------------------------------------------------------------- Event


def test_event() -> None:
    now = datetime.now(UTC)
    ev = obj(
        "Event",
        "web.17a",
        involvedObject={
            "kind": "Pod",
            "namespace": "default",
            "name": "web",
            "uid": "u1",
            "fieldPath": "spec.containers{app}",
        },
        reason="Pulled",
        message=" Successfully pulled image ",
        type="Normal",
        source={"component": "kubelet", "host": "node-1"},
        firstTimestamp=(now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        lastTimestamp=(now - timedelta(seconds=42)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        count=3,
    )
    assert errors(EVENTS, ev) == []
    assert row(EVENTS, ev) == [
        "42s", "Normal", "Pulled", "pod/web", "spec.containers{app}", "kubelet, node-1",
        "Successfully pulled image", "10m", 3, "web.17a",
    ]  # fmt: skip
    selectors = {k: f(decode(EVENTS, ev)) for k, f in EVENTS.field_selectors.items()}
    assert selectors["involvedObject.name"] == "web"
    assert selectors["involvedObject.fieldPath"] == "spec.containers{app}"
    assert selectors["source"] == "kubelet"
    assert selectors["reason"] == "Pulled"
    elsewhere = copy.deepcopy(ev)
    elsewhere["involvedObject"]["namespace"] = "other"
    assert errors(EVENTS, elsewhere) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace'
    ]
    assert [c.name for c in EVENTS.table_columns][:4] == ["Last Seen", "Type", "Reason", "Object"]


# --------------------------------------------------------------------------- PV / PVC


def pv(**spec: Any) -> dict[str, Any]:
    body = {
        "capacity": {"storage": "10240Mi"},
        "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": "/data"},
    }
    body.update(spec)
    return obj("PersistentVolume", "pv1", None, spec=body)


def test_persistent_volume() -> None:
    out = valid_defaulted(PERSISTENT_VOLUMES, pv())
    assert out["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert out["spec"]["volumeMode"] == "Filesystem"
    assert out["spec"]["capacity"] == {"storage": "10Gi"}
    assert out["status"] == {"phase": "Pending"}
    out["spec"]["claimRef"] = {"namespace": "default", "name": "data"}
    out["spec"]["storageClassName"] = "local"
    assert row(PERSISTENT_VOLUMES, out) == [
        "pv1", "10Gi", "RWO", "Retain", "Pending", "default/data",
        "local", "<unset>", "", "<unknown>", "Filesystem",
    ]  # fmt: skip
    assert errors(
        PERSISTENT_VOLUMES, defaulted(PERSISTENT_VOLUMES, pv(accessModes=[], hostPath=None, capacity=None))
    ) == [
        "spec.accessModes: Required value",
        "spec.capacity: Required value",
        "spec: Required value: must specify a volume type",
    ]
    moved = copy.deepcopy(out)
    moved["spec"]["hostPath"]["path"] = "/elsewhere"
    assert errors(PERSISTENT_VOLUMES, moved, out) == [
        "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
    ]


def pvc(**spec: Any) -> dict[str, Any]:
    body = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    body.update(spec)
    return obj("PersistentVolumeClaim", "data", spec=body)


def test_persistent_volume_claim() -> None:
    out = valid_defaulted(PERSISTENT_VOLUME_CLAIMS, pvc())
    assert out["spec"]["volumeMode"] == "Filesystem"
    assert out["status"] == {"phase": "Pending"}
    assert row(PERSISTENT_VOLUME_CLAIMS, out) == [
        "data",
        "Pending",
        "",
        "",
        "",
        "",
        "<unset>",
        "<unknown>",
        "Filesystem",
    ]
    bound = copy.deepcopy(out)
    bound["spec"]["volumeName"] = "pv1"
    assert errors(PERSISTENT_VOLUME_CLAIMS, bound, out) == []  # binding sets volumeName once
    bound["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
    assert row(PERSISTENT_VOLUME_CLAIMS, bound)[:5] == ["data", "Bound", "pv1", "1Gi", "RWO"]
    grown = copy.deepcopy(bound)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert errors(PERSISTENT_VOLUME_CLAIMS, grown, bound) == []
    reclassed = copy.deepcopy(bound)
    reclassed["spec"]["storageClassName"] = "fast"
    assert errors(PERSISTENT_VOLUME_CLAIMS, reclassed, bound) == [
        "spec: Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims"
    ]
    assert errors(
        PERSISTENT_VOLUME_CLAIMS, defaulted(PERSISTENT_VOLUME_CLAIMS, pvc(accessModes=[], resources={}))
    ) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]


# --------------------------------------------------------------------------- Lease / EndpointSlice


def test_lease() -> None:
    lease = obj(
        "Lease",
        "node-1",
        "kube-node-lease",
        "coordination.k8s.io/v1",
        spec={"holderIdentity": "node-1", "leaseDurationSeconds": 40},
    )
    assert errors(LEASES, lease) == []
    assert row(LEASES, lease) == ["node-1", "node-1", "<unknown>"]
    bad = obj(
        "Lease",
        "l",
        api_version="coordination.k8s.io/v1",
        spec={"leaseDurationSeconds": 0, "leaseTransitions": -1},
    )
    assert errors(LEASES, bad) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
    ]


def eps(**body: Any) -> dict[str, Any]:
    return obj("EndpointSlice", "web-abc", api_version="discovery.k8s.io/v1", **body)


def test_endpoint_slice() -> None:
    body = eps(
        addressType="IPv4",
        endpoints=[{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
        ports=[{"port": 80}, {"name": "metrics", "port": 9090}],
    )
    out = valid_defaulted(ENDPOINT_SLICES, body)
    assert out["ports"] == [
        {"name": "", "port": 80, "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
    ]
    assert row(ENDPOINT_SLICES, out) == [
        "web-abc",
        "IPv4",
        "80,9090",
        "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
        "<unknown>",
    ]
    assert row(ENDPOINT_SLICES, eps(addressType="IPv4"))[2:4] == ["<unset>", "<unset>"]
    bad = defaulted(ENDPOINT_SLICES, eps(addressType="IPv5", endpoints=[{"addresses": []}]))
    assert errors(ENDPOINT_SLICES, bad) == [
        'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"',
        "endpoints[0].addresses: Required value: must contain at least 1 address",
    ]
    wrong_family = defaulted(
        ENDPOINT_SLICES, eps(addressType="IPv6", endpoints=[{"addresses": ["10.0.0.1"]}])
    )
    assert errors(ENDPOINT_SLICES, wrong_family) == [
        'endpoints[0].addresses[0]: Invalid value: "10.0.0.1": must be a valid IPv6 address'
    ]
    changed = copy.deepcopy(out)
    changed["addressType"] = "IPv6"
    changed["endpoints"] = [{"addresses": ["fd00::1"]}]
    assert errors(ENDPOINT_SLICES, changed, out) == ['addressType: Invalid value: "IPv6": field is immutable']


@pytest.mark.parametrize("rt", [NAMESPACES, NODES, PERSISTENT_VOLUMES])
def test_cluster_scoped(rt: Any) -> None:
    assert rt.namespaced is False


@pytest.mark.parametrize(
    ("rt", "body"),
    [
        (CONFIG_MAPS, obj("ConfigMap", data={"a": "1"})),
        (SERVICE_ACCOUNTS, obj("ServiceAccount", "builder")),
        (
            EVENTS,
            obj(
                "Event",
                "web.1",
                involvedObject={"kind": "Pod", "namespace": "default", "name": "web"},
                reason="Started",
                type="Normal",
            ),
        ),
        (LEASES, obj("Lease", "l", api_version="coordination.k8s.io/v1", spec={"holderIdentity": "a"})),
    ],
    ids=lambda v: getattr(v, "plural", ""),
)
def test_remaining_kinds_match_the_strict_schema(rt: Any, body: dict[str, Any]) -> None:
    valid_defaulted(rt, body)
