"""Table and PartialObjectMetadata answers, as kubectl and metadata-only clients ask for them."""

from __future__ import annotations

import json
import ssl
from typing import Any

import urllib3

Cluster = Any  # tests/apiserver/conftest.py

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PARTIAL = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


def _get(cluster: Cluster, path: str, accept: str) -> tuple[int, dict[str, Any], str]:
    pool = urllib3.PoolManager(ssl_context=ssl.create_default_context(cafile=cluster.ca_file), retries=False)
    r = pool.request(
        "GET", cluster.url + path, headers={"Authorization": f"Bearer {cluster.token}", "Accept": accept}
    )
    return r.status, json.loads(r.data), r.headers.get("Content-Type", "")


def test_table_list_and_get(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "t1", "-n", ns, "--from-literal=a=b")
    code, table, _ = _get(cluster, f"/api/v1/namespaces/{ns}/configmaps?limit=500", TABLE)
    assert code == 200 and table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["columnDefinitions"][0]["name"] == "Name"
    row = table["rows"][0]
    assert row["cells"][0] == "t1"
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["namespace"] == ns
    assert table["metadata"]["resourceVersion"].isdigit()
    code, table, _ = _get(cluster, f"/api/v1/namespaces/{ns}/configmaps/t1?includeObject=Object", TABLE)
    assert table["rows"][0]["object"]["data"] == {"a": "b"}
    code, table, _ = _get(cluster, f"/api/v1/namespaces/{ns}/configmaps?includeObject=None", TABLE)
    assert "object" not in table["rows"][0]
    code, table, _ = _get(cluster, "/api/v1/namespaces", TABLE)
    assert any(r["cells"][0] == ns for r in table["rows"])


def test_partial_object_metadata(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "p1", "-n", ns, "--from-literal=secret=hidden")
    code, lst, _ = _get(cluster, f"/api/v1/namespaces/{ns}/configmaps", PARTIAL)
    assert code == 200 and lst["kind"] == "PartialObjectMetadataList"
    assert lst["items"][0]["metadata"]["name"] == "p1" and "data" not in lst["items"][0]


def test_aggregated_discovery_content_type(cluster: Cluster) -> None:
    accept = (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    )
    for path in ("/api", "/apis"):
        code, doc, ctype = _get(cluster, path, accept)
        assert code == 200 and doc["kind"] == "APIGroupDiscoveryList"
        assert "g=apidiscovery.k8s.io" in ctype and "v=v2" in ctype and "as=APIGroupDiscoveryList" in ctype
    code, doc, _ = _get(cluster, "/api", "application/json")
    assert doc["kind"] == "APIVersions"


def test_watch_one_object_by_path(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "one", "-n", ns)
    cluster.kubectl("create", "configmap", "two", "-n", ns)
    for path in (
        f"/api/v1/namespaces/{ns}/configmaps/one?watch=true&timeoutSeconds=1",
        f"/api/v1/watch/namespaces/{ns}/configmaps/one?timeoutSeconds=1",
    ):
        pool = urllib3.PoolManager(
            ssl_context=ssl.create_default_context(cafile=cluster.ca_file), retries=False
        )
        r = pool.request("GET", cluster.url + path, headers={"Authorization": f"Bearer {cluster.token}"})
        events = [json.loads(line) for line in r.data.splitlines() if line.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one")]
