"""The API server on PostgreSQL: the same kubectl and client flows, the store being the only change."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

Cluster = Any  # tests/apiserver/conftest.py

pytestmark = pytest.mark.postgres


def test_kubectl_flows_on_postgres(pg_cluster: Cluster) -> None:
    c = pg_cluster
    ns = c.namespace()
    doc = textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web, namespace: {ns}}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec: {{containers: [{{name: c, image: busybox}}]}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: cfg, namespace: {ns}}}
        data: {{a: b}}
        """)
    # a watch from the list's resourceVersion replays everything after it, however late it starts
    listed = json.loads(c.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps").stdout)
    rv = listed["metadata"]["resourceVersion"]
    assert "created" in c.kubectl("apply", "-f", "-", input=doc).stdout
    c.kubectl("scale", "deploy/web", "-n", ns, "--replicas=4")
    c.kubectl("label", "cm", "cfg", "-n", ns, "x=y")
    path = f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=2"
    events = c.kubectl("get", "--raw", path).stdout
    assert [json.loads(line)["type"] for line in events.splitlines() if line.strip()] == ["ADDED", "MODIFIED"]
    d = c.kjson("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 4 and d["metadata"]["generation"] == 2
    for i in range(5):
        c.kubectl("create", "configmap", f"p{i}", "-n", ns)
    names = c.kubectl("get", "cm", "-n", ns, "--chunk-size=2", "-o", "name").stdout.split()
    assert names == ["configmap/cfg"] + [f"configmap/p{i}" for i in range(5)]
    listed = json.loads(c.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?limit=2").stdout)
    assert listed["metadata"]["continue"] and len(listed["items"]) == 2
    c.kubectl("delete", "-f", "-", input=doc)
    assert c.kubectl("get", "deploy", "web", "-n", ns, check=False).returncode != 0
