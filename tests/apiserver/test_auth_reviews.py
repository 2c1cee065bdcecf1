"""``kubectl auth whoami`` and ``kubectl auth can-i`` against a real server, for both identities.

kybern's admin token is a system:masters user and its node token the node agents' identity;
neither is restricted, so every access review must answer allowed (it must tell the truth).
The reviews are created, never stored, and appear in discovery and OpenAPI like kube's.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import Cluster


def _request(cluster: Cluster, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        cluster.url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token or cluster.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _node_kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    """The admin kubeconfig with the node token in place of the admin's."""
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = (cluster.data_dir / "node-token").read_text().strip()
    path = tmp_path / "node-kubeconfig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_whoami_admin(cluster: Cluster) -> None:
    table = cluster.kubectl("auth", "whoami").stdout.split("\n")
    assert table[0].split() == ["ATTRIBUTE", "VALUE"]
    assert table[1].split() == ["Username", "admin"]
    assert table[2].split(None, 1) == ["Groups", "[system:masters system:authenticated]"]
    review = cluster.kjson("auth", "whoami")
    assert review["kind"] == "SelfSubjectReview"
    assert review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["status"]["userInfo"] == {
        "username": "admin",
        "groups": ["system:masters", "system:authenticated"],
    }


def test_whoami_and_can_i_as_node(cluster: Cluster, tmp_path: Path) -> None:
    node = _node_kubeconfig(cluster, tmp_path)
    base = ("--kubeconfig", str(node), "--cache-dir", str(cluster.cache_dir))
    import subprocess

    from support.cluster import KUBECTL

    out = subprocess.run([KUBECTL, *base, "auth", "whoami", "-o", "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["userInfo"] == {
        "username": "system:node",
        "groups": ["system:nodes", "system:authenticated"],
    }
    # the node token is not restricted by kybern, so the truthful answer is yes
    out = subprocess.run([KUBECTL, *base, "auth", "can-i", "delete", "nodes"], capture_output=True, text=True)
    assert (out.returncode, out.stdout.strip()) == (0, "yes"), out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("create", "pods"),
        ("delete", "deployments.apps", "-n", "kube-system"),
        ("list", "deployments.apps/web", "--subresource=scale"),
        ("*", "*"),
        ("get", "/healthz"),
        ("watch", "configmaps", "-A"),
    ],
)
def test_can_i_admin(cluster: Cluster, args: tuple[str, ...]) -> None:
    out = cluster.kubectl("auth", "can-i", *args, check=False)
    assert (out.returncode, out.stdout.strip()) == (0, "yes"), out.stderr


def test_can_i_list(cluster: Cluster) -> None:
    lines = [line.split() for line in cluster.kubectl("auth", "can-i", "--list").stdout.splitlines()]
    assert lines[0] == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert ["*.*", "[]", "[]", "[*]"] in lines
    assert ["[*]", "[]", "[*]"] in lines


def test_can_i_unknown_resource_warns_as_kubectl_does(cluster: Cluster) -> None:
    out = cluster.kubectl("auth", "can-i", "get", "foos", check=False)
    assert "doesn't have a resource type 'foos'" in out.stderr


def test_reviews_over_rest_validate_against_schema(cluster: Cluster) -> None:
    code, ssar = _request(
        cluster,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}},
        },
    )
    assert code == 201, ssar
    assert ssar["status"]["allowed"] is True
    assert ssar["spec"]["resourceAttributes"] == {"verb": "get", "resource": "pods", "namespace": "default"}
    code, ssrr = _request(
        cluster,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": "a"},
        },
    )
    assert code == 201, ssrr
    assert ssrr["status"]["incomplete"] is False
    code, ssr = _request(
        cluster,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert code == 201, ssr
    for obj in (ssar, ssrr, ssr):
        kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_review_errors(cluster: Cluster) -> None:
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}}
    code, status = _request(cluster, "POST", path, review)
    assert (code, status["reason"]) == (422, "Invalid"), status
    assert status["details"]["causes"][0]["field"] == "spec.resourceAttributes"
    both = {**review, "spec": {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/"}}}
    code, status = _request(cluster, "POST", path, both)
    assert (code, status["reason"]) == (422, "Invalid"), status
    code, status = _request(cluster, "GET", path)
    assert (code, status["reason"]) == (405, "MethodNotAllowed"), status
    code, status = _request(cluster, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
    assert code == 400, status
    code, status = _request(cluster, "POST", path, review, token="wrong")
    assert code == 401, status


def test_reviews_in_discovery_and_openapi(cluster: Cluster) -> None:
    resources = cluster.kubectl("api-resources", "--api-group=authorization.k8s.io", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    assert rows["selfsubjectaccessreviews"][-1] == "create"  # the VERBS column of -o wide
    assert "selfsubjectrulesreviews" in rows
    authn = cluster.kubectl("api-resources", "--api-group=authentication.k8s.io", "-o", "name").stdout
    assert authn.split() == ["selfsubjectreviews.authentication.k8s.io"]
    code, index = _request(cluster, "GET", "/openapi/v3")
    assert code == 200
    for gv in ("apis/authorization.k8s.io/v1", "apis/authentication.k8s.io/v1"):
        code, doc = _request(cluster, "GET", index["paths"][gv]["serverRelativeURL"])
        assert code == 200, doc
        schemas = doc["components"]["schemas"]
        if gv.startswith("apis/authorization"):
            post = doc["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]["post"]
            assert post["x-kubernetes-group-version-kind"]["kind"] == "SelfSubjectAccessReview"
            assert (
                "resourceAttributes"
                in (schemas["io.k8s.api.authorization.v1.SelfSubjectAccessReviewSpec"]["properties"])
            )
        else:
            assert "io.k8s.api.authentication.v1.SelfSubjectReview" in schemas
    explain = cluster.kubectl("explain", "selfsubjectaccessreviews.spec").stdout
    assert "resourceAttributes" in explain


def test_python_client_reviews(kube_client: Any) -> None:
    from kubernetes import client

    me = client.AuthenticationV1Api(kube_client).create_self_subject_review(
        client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    )
    assert me.status.user_info.username == "admin"
    assert "system:masters" in me.status.user_info.groups
    review = client.AuthorizationV1Api(kube_client).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                non_resource_attributes=client.V1NonResourceAttributes(path="/metrics", verb="get")
            )
        )
    )
    assert review.status.allowed is True


def test_impersonation_is_refused_not_ignored(cluster: Cluster) -> None:
    """kybern cannot act as another user, so ``--as`` must fail loudly (kube's 403 for a user
    who may not impersonate) rather than run with the admin's rights."""
    # kubectl whoami words any 403 its own way
    out = cluster.kubectl("auth", "whoami", "--as=bob", check=False)
    assert out.returncode != 0 and "do not have permission" in out.stderr, out.stderr
    for args in (("get", "namespaces", "--as=bob"), ("auth", "can-i", "get", "pods", "--as=bob")):
        out = cluster.kubectl(*args, check=False)
        assert out.returncode != 0, out.stdout
        assert "Forbidden" in out.stderr and "cannot impersonate" in out.stderr, out.stderr
    code, status = _request_with_headers(cluster, {"Impersonate-Group": "devs"})
    assert (code, status["reason"]) == (403, "Forbidden"), status
    assert status["details"]["kind"] == "groups"


def _request_with_headers(cluster: Cluster, headers: dict[str, str]) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    req = urllib.request.Request(
        cluster.url + "/api/v1/namespaces", headers={"Authorization": f"Bearer {cluster.token}", **headers}
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
