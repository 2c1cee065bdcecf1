"""Every kind the built-in plugins serve: apply, get (schema-valid), Table, describe, delete."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import yaml

Cluster = Any  # tests/apiserver/conftest.py

POD_SPEC = {"containers": [{"name": "c", "image": "busybox"}]}
TEMPLATE = {"metadata": {"labels": {"app": "k"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "k"}}


def manifests(ns: str) -> list[dict[str, Any]]:
    def obj(api: str, kind: str, name: str = "k", namespaced: bool = True, **rest: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {"suite": "every-kind"}}
        if namespaced:
            meta["namespace"] = ns
        return {"apiVersion": api, "kind": kind, "metadata": meta, **rest}

    return [
        obj("v1", "ConfigMap", data={"a": "b"}),
        obj("v1", "Secret", stringData={"a": "b"}),
        obj("v1", "ServiceAccount"),
        obj("v1", "Service", spec={"selector": {"app": "k"}, "ports": [{"port": 80}]}),
        obj("v1", "Endpoints", subsets=[{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]),
        obj("v1", "Pod", spec=POD_SPEC),
        obj(
            "v1",
            "PersistentVolumeClaim",
            spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        ),
        obj(
            "v1",
            "PersistentVolume",
            name=f"{ns}-pv",
            namespaced=False,
            spec={
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/x"},
            },
        ),
        obj("v1", "Node", name=f"{ns}-node", namespaced=False),
        obj(
            "v1",
            "Event",
            involvedObject={"kind": "Pod", "name": "k", "namespace": ns},
            reason="Test",
            message="hello",
            type="Normal",
        ),
        obj("apps/v1", "Deployment", spec={"selector": SELECTOR, "template": TEMPLATE}),
        obj("apps/v1", "ReplicaSet", spec={"selector": SELECTOR, "template": TEMPLATE}),
        obj("apps/v1", "StatefulSet", spec={"selector": SELECTOR, "template": TEMPLATE, "serviceName": "k"}),
        obj("apps/v1", "DaemonSet", spec={"selector": SELECTOR, "template": TEMPLATE}),
        obj("apps/v1", "ControllerRevision", revision=1, data={"spec": {}}),
        obj("batch/v1", "Job", spec={"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}),
        obj(
            "batch/v1",
            "CronJob",
            spec={
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {**POD_SPEC, "restartPolicy": "OnFailure"}}}},
            },
        ),
        obj("coordination.k8s.io/v1", "Lease", spec={"holderIdentity": "me", "leaseDurationSeconds": 10}),
        obj(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            addressType="IPv4",
            endpoints=[{"addresses": ["10.0.0.1"]}],
            ports=[{"port": 80}],
        ),
    ]


def test_every_kind_end_to_end(cluster: Cluster, ns: str) -> None:
    docs = manifests(ns)
    out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs)).stdout
    assert out.count("created") == len(docs), out
    for d in docs:
        kind = d["kind"]
        name = d["metadata"]["name"]
        where = ["-n", ns] if "namespace" in d["metadata"] else []
        got = json.loads(cluster.kubectl("get", kind, name, *where, "-o", "json").stdout)
        kubernetes_validate.validate(got, "1.32.0", strict=True)
        assert got["metadata"]["labels"] == {"suite": "every-kind"}
        table = cluster.kubectl("get", kind, name, *where).stdout
        first = "LAST SEEN" if kind == "Event" else "NAME"
        assert table.splitlines()[0].startswith(first) and (name in table or kind == "Event"), table
        cluster.kubectl("describe", kind, name, *where)
        cluster.kubectl(
            "delete", kind, name, *where, "--grace-period=0", "--force" if kind == "Pod" else "--wait"
        )
        gone = cluster.kubectl("get", kind, name, *where, check=False)
        assert gone.returncode != 0 and "not found" in gone.stderr, f"{kind}: {gone.stdout}{gone.stderr}"
