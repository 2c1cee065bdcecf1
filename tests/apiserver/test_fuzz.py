"""Malformed requests: each gets a Status with the right code, never a 500, and writes nothing."""

from __future__ import annotations

import json
import random
import ssl
from typing import Any

import pytest
import urllib3

Cluster = Any  # tests/apiserver/conftest.py

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


class Http:
    def __init__(self, cluster: Cluster) -> None:
        ctx = ssl.create_default_context(cafile=cluster.ca_file)
        self.pool = urllib3.PoolManager(ssl_context=ctx, retries=False, timeout=30)
        self.base = cluster.url
        self.auth = {"Authorization": f"Bearer {cluster.token}"}

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        if isinstance(body, str):
            body = body.encode()
        h = {**self.auth, "Content-Type": ctype, **(headers or {})}
        r = self.pool.request(method, self.base + path, body=body, headers=h)
        try:
            data = json.loads(r.data) if r.data else None
        except ValueError:
            data = r.data
        return r.status, data

    def revision(self) -> int:
        code, data = self.call("GET", "/api/v1/namespaces")
        assert code == 200
        return int(data["metadata"]["resourceVersion"])


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Http:
    return Http(cluster)


def cm_body(name: str = "ok", **extra: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra})


BIG = "x" * (4 * 1024 * 1024)
CASES: list[tuple[str, str, bytes | str | None, str, int]] = [
    ("POST", CM, b"\x00\xff\xfe garbage", "application/json", 400),
    ("POST", CM, b"{", "application/json", 400),
    ("POST", CM, "[1, 2]", "application/json", 400),
    ("POST", CM, '"just a string"', "application/json", 400),
    ("POST", CM, "", "application/json", 400),
    ("POST", CM, "key: [unclosed", "application/yaml", 400),
    ("POST", CM, b"\x01\x02\x03", "application/vnd.kubernetes.protobuf", 400),
    ("POST", CM, b"k8s\x00\x0a\xff", "application/vnd.kubernetes.protobuf", 400),
    ("POST", CM, cm_body(), "text/html", 415),
    (
        "POST",
        CM,
        json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        "application/json",
        400,
    ),
    (
        "POST",
        CM,
        json.dumps({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        "application/json",
        400,
    ),
    ("POST", CM, json.dumps({"apiVersion": 5, "kind": ["ConfigMap"]}), "application/json", 400),
    (
        "POST",
        CM,
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": "x"}),
        "application/json",
        400,
    ),
    ("POST", CM, cm_body(data=5), "application/json", 400),
    ("POST", CM, cm_body(data={"a": 1}), "application/json", 400),
    ("POST", CM + "?fieldValidation=Strict", cm_body(bogus=1), "application/json", 400),
    (
        "POST",
        CM + "?fieldValidation=Strict",
        '{"kind":"ConfigMap","kind":"ConfigMap","metadata":{"name":"d"}}',
        "application/json",
        400,
    ),
    ("POST", CM + "?fieldValidation=Maybe", cm_body(), "application/json", 400),
    ("POST", CM + "?dryRun=Some", cm_body(), "application/json", 400),
    ("POST", CM, cm_body("UPPER"), "application/json", 422),
    ("POST", CM, cm_body("a" * 300), "application/json", 422),
    ("POST", CM, cm_body("../etc"), "application/json", 422),
    ("POST", CM, cm_body(""), "application/json", 422),
    ("POST", CM, cm_body("x\u00e9\u0000"), "application/json", 422),
    (
        "POST",
        CM,
        json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l", "labels": {"bad key!": "v"}}}
        ),
        "application/json",
        422,
    ),
    ("POST", CM, cm_body(data={"bad key!": "v"}), "application/json", 422),
    (
        "POST",
        CM,
        '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"' + BIG + '"}}',
        "application/json",
        413,
    ),
    (
        "POST",
        DEPLOY,
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {"replicas": "two"},
            }
        ),
        "application/json",
        400,
    ),
    (
        "POST",
        DEPLOY,
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {"replicas": -3},
            }
        ),
        "application/json",
        422,
    ),
    (
        "POST",
        DEPLOY,
        json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}),
        "application/json",
        422,
    ),
    ("POST", "/api/v1/namespaces/nope-missing/configmaps", cm_body(), "application/json", 404),
    ("POST", "/api/v1/configmaps", cm_body(), "application/json", 404),
    ("POST", "/api/v1/foos", "{}", "application/json", 404),
    ("GET", "/api/v2/pods", None, "application/json", 404),
    ("GET", "/apis/nope.example.com/v1/things", None, "application/json", 404),
    ("GET", "/apis/apps/v9/deployments", None, "application/json", 404),
    ("GET", "/api/v1/namespaces/default/configmaps/a/b/c/d", None, "application/json", 404),
    ("GET", "/api/v1/namespaces/default/nodes", None, "application/json", 404),
    ("GET", "/openapi/v2", None, "application/json", 404),
    ("GET", CM + "?labelSelector=a%20in%20(", None, "application/json", 400),
    ("GET", CM + "?labelSelector=%21%21", None, "application/json", 400),
    ("GET", CM + "?fieldSelector=spec.x%3D1", None, "application/json", 400),
    ("GET", CM + "?fieldSelector=nonsense", None, "application/json", 400),
    ("GET", CM + "?resourceVersion=abc", None, "application/json", 400),
    ("GET", CM + "?resourceVersion=-1", None, "application/json", 400),
    ("GET", CM + "?resourceVersion=999999999", None, "application/json", 504),
    ("GET", CM + "?resourceVersionMatch=Exact", None, "application/json", 400),
    ("GET", CM + "?resourceVersionMatch=Whatever&resourceVersion=1", None, "application/json", 400),
    ("GET", CM + "?limit=abc", None, "application/json", 400),
    ("GET", CM + "?continue=%%%", None, "application/json", 400),
    ("GET", CM + "?watch=true&timeoutSeconds=abc", None, "application/json", 400),
    ("GET", CM + "?watch=true&resourceVersion=zz", None, "application/json", 400),
    ("GET", CM + "/missing", None, "application/json", 404),
    ("PUT", CM + "/missing", cm_body("missing"), "application/json", 404),
    ("PUT", CM + "/seed", cm_body("other"), "application/json", 400),
    ("PUT", CM + "/seed", b"\xff", "application/json", 400),
    ("PATCH", CM + "/seed", "{}", "text/plain", 415),
    ("PATCH", CM + "/seed", "not json", "application/merge-patch+json", 400),
    ("PATCH", CM + "/seed", '{"op": "add"}', "application/json-patch+json", 400),
    ("PATCH", CM + "/seed", '[{"op": "explode", "path": "/data"}]', "application/json-patch+json", 422),
    (
        "PATCH",
        CM + "/seed",
        '[{"op": "test", "path": "/data/k", "value": "nope"}]',
        "application/json-patch+json",
        422,
    ),
    ("PATCH", CM + "/seed", '{"data": 7}', "application/merge-patch+json", 400),
    ("PATCH", CM + "/seed", '{"metadata": {"name": "renamed"}}', "application/merge-patch+json", 422),
    ("PATCH", CM + "/seed", '{"data": {"x": "y"}}', "application/apply-patch+yaml", 400),
    ("PATCH", CM + "/missing", '{"data": {}}', "application/merge-patch+json", 404),
    ("DELETE", CM + "/seed", "not json", "application/json", 400),
    ("DELETE", CM + "/seed", '{"kind": "Pod"}', "application/json", 400),
    ("DELETE", CM + "/seed", '{"propagationPolicy": "Sometimes"}', "application/json", 400),
    ("DELETE", CM + "/seed", '{"gracePeriodSeconds": "soon"}', "application/json", 400),
    ("DELETE", CM + "/seed", '{"preconditions": {"uid": "nope"}}', "application/json", 409),
    ("DELETE", CM + "/seed?gracePeriodSeconds=x", None, "application/json", 400),
    ("DELETE", CM + "/missing", None, "application/json", 404),
    ("POST", "/api/v1/namespaces/default/pods/missing/binding", "{}", "application/json", 422),
    (
        "POST",
        "/api/v1/namespaces/default/pods/missing/binding",
        '{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "missing"}, "target": {"name": "n"}}',
        "application/json",
        404,
    ),
    ("GET", "/api/v1/namespaces/default/configmaps/seed/scale", None, "application/json", 404),
]


def test_malformed_requests_get_statuses_and_change_nothing(http: Http) -> None:
    code, _ = http.call("POST", CM, cm_body("seed", data={"k": "v"}))
    assert code == 201
    before = http.revision()
    problems = []
    for method, path, body, ctype, want in CASES:
        code, data = http.call(method, path, body, ctype)
        shown = body[:60] if isinstance(body, (bytes, str)) else body
        if code != want:
            problems.append(f"{method} {path} {shown!r}: got {code} (wanted {want}): {str(data)[:200]}")
            continue
        if not (isinstance(data, dict) and data.get("kind") == "Status" and data.get("code") == want):
            problems.append(f"{method} {path}: answer is not a Status with code {want}: {str(data)[:200]}")
        elif data.get("status") != "Failure" or not data.get("reason") or not data.get("message"):
            problems.append(f"{method} {path}: incomplete Status {data}")
    assert not problems, "\n".join(problems)
    assert http.revision() == before
    code, data = http.call("GET", CM + "/seed")
    assert code == 200 and data["data"] == {"k": "v"}


def test_unauthenticated_requests(http: Http, cluster: Cluster) -> None:
    for auth in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": ""}):
        r = http.pool.request("GET", cluster.url + "/api/v1/namespaces", headers=auth)
        assert r.status == 401
        st = json.loads(r.data)
        assert st["kind"] == "Status" and st["reason"] == "Unauthorized"
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert http.pool.request("GET", cluster.url + path).status == 200


def _mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    choice = rng.random()
    if isinstance(value, dict) and value and choice < 0.6 and depth < 4:
        key = rng.choice(list(value))
        out = dict(value)
        out[key] = _mutate(value[key], rng, depth + 1)
        return out
    junk = [
        None,
        0,
        -1,
        2**40,
        1.5,
        True,
        "",
        "x" * rng.randint(1, 300),
        [],
        {},
        ["a"],
        {"a": 1},
        "\u0000\u202e",
        "🙂",
        {"$patch": "delete"},
    ]
    return rng.choice(junk)


def test_random_mutations_never_500(http: Http) -> None:
    rng = random.Random(1234)
    base = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "fz", "labels": {"a": "b"}, "annotations": {"c": "d"}},
        "data": {"k": "v"},
    }
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fzd"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 1}]}]},
            },
        },
    }
    failures = []
    for i in range(150):
        for path, doc in ((CM, base), (DEPLOY, dep)):
            body = _mutate(doc, rng)
            if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
                body["metadata"] = {**body["metadata"], "name": f"{body['metadata'].get('name', 'x')}-{i}"}
            code, data = http.call("POST", path, json.dumps(body))
            if code >= 500 or code not in (201, 400, 404, 409, 422):
                failures.append(f"{json.dumps(body)[:300]} -> {code} {str(data)[:300]}")
            patch = json.dumps(_mutate({"metadata": {"labels": {"x": "y"}}, "data": {"k": "v"}}, rng))
            for ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                code, data = http.call("PATCH", CM + "/seed", patch, ctype)
                if code >= 500:
                    failures.append(f"PATCH {ctype} {patch[:200]} -> {code} {str(data)[:300]}")
    assert not failures, "\n".join(failures[:10])
