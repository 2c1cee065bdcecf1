"""Service account tokens against a real server: ``kubectl create token``, then kubectl and the
official Python client with that token; what must be refused (bad signature, expired, deleted
service account or bound pod, another audience) gets 401."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from conftest import Cluster
from cryptography.hazmat.primitives.asymmetric import ec
from kybern.plugins.apiserver.satokens import TokenSigner, ensure_signing_key


def _kubeconfig_with(cluster: Cluster, tmp_path: Path, token: str) -> Path:
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = token
    path = tmp_path / f"kubeconfig-{abs(hash(token))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _get(cluster: Cluster, path: str, token: str) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    req = urllib.request.Request(cluster.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def account(cluster: Cluster) -> tuple[str, str]:
    ns = cluster.namespace()
    cluster.kubectl("-n", ns, "create", "serviceaccount", "robot")
    return ns, "robot"


def test_create_token_and_use_it_with_kubectl(
    cluster: Cluster, account: tuple[str, str], tmp_path: Path
) -> None:
    ns, name = account
    cluster.kubectl(
        "-n", ns, "run", "p1", "--image=busybox:1.36", "--restart=Never", "--overrides",
        json.dumps({"spec": {"serviceAccountName": name}}),
    )  # fmt: skip
    token = cluster.kubectl("-n", ns, "create", "token", name).stdout.strip()
    claims = _claims(token)
    sa_uid = cluster.kjson("-n", ns, "get", "sa", name)["metadata"]["uid"]
    assert claims["sub"] == f"system:serviceaccount:{ns}:{name}"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"] == {"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}}
    kubeconfig = _kubeconfig_with(cluster, tmp_path, token)
    base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache")]
    import subprocess

    out = subprocess.run([*base, "-n", ns, "get", "pods", "-o", "name"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pod/p1"]
    whoami = json.loads(
        subprocess.run(
            [*base, "auth", "whoami", "-o", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    info = whoami["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:{name}"
    assert info["uid"] == sa_uid
    assert info["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{ns}",
        "system:authenticated",
    ]
    assert info["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={claims['jti']}"]
    can = subprocess.run([*base, "auth", "can-i", "delete", "nodes"], capture_output=True, text=True)
    assert can.stdout.strip() == "yes"
    # the official Python client with the same token
    from kubernetes import client

    conf = client.Configuration()
    conf.host = cluster.url
    conf.ssl_ca_cert = cluster.ca_file
    conf.api_key = {"authorization": "Bearer " + token}
    with client.ApiClient(conf) as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(ns)
        assert [p.metadata.name for p in pods.items] == ["p1"]
        # the client's own TokenRequest call (JSON, where kubectl sends protobuf)
        spec = client.V1TokenRequestSpec(audiences=[], expiration_seconds=700)
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(
            name, ns, client.AuthenticationV1TokenRequest(spec=spec)
        )
    assert answer.spec.expiration_seconds == 700 and answer.status.expiration_timestamp
    assert _get(cluster, f"/api/v1/namespaces/{ns}/pods", answer.status.token)[0] == 200


def test_token_options_and_pod_binding(cluster: Cluster, account: tuple[str, str], tmp_path: Path) -> None:
    ns, name = account
    cluster.kubectl(
        "-n", ns, "run", "bound", "--image=busybox:1.36", "--restart=Never", "--overrides",
        json.dumps({"spec": {"serviceAccountName": name}}),
    )  # fmt: skip
    pod_uid = cluster.kjson("-n", ns, "get", "pod", "bound")["metadata"]["uid"]
    token = cluster.kubectl(
        "-n", ns, "create", "token", name, "--duration=20m", "--audience=api", "--audience",
        "https://kubernetes.default.svc.cluster.local", "--bound-object-kind=Pod",
        "--bound-object-name=bound",
    ).stdout.strip()  # fmt: skip
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] == 1200
    assert claims["aud"] == ["api", "https://kubernetes.default.svc.cluster.local"]
    assert claims["kubernetes.io"]["pod"] == {"name": "bound", "uid": pod_uid}
    assert _get(cluster, f"/api/v1/namespaces/{ns}/pods", token)[0] == 200
    # a token for another audience only is not for this server
    other = cluster.kubectl("-n", ns, "create", "token", name, "--audience=vault").stdout.strip()
    assert _get(cluster, f"/api/v1/namespaces/{ns}/pods", other)[0] == 401
    # too short, unknown bound kind, a pod of another service account
    short = cluster.kubectl("-n", ns, "create", "token", name, "--duration=5m", check=False)
    assert short.returncode != 0
    assert "may not specify a duration less than 10 minutes" in short.stderr
    cluster.kubectl("-n", ns, "run", "other", "--image=busybox:1.36", "--restart=Never")
    cluster.kubectl("-n", ns, "create", "sa", "default")
    wrong = cluster.kubectl(
        "-n", ns, "create", "token", name, "--bound-object-kind=Pod", "--bound-object-name=other", check=False
    )
    assert wrong.returncode != 0 and "different serviceaccount name" in wrong.stderr
    missing = cluster.kubectl("-n", ns, "create", "token", "nobody", check=False)
    assert missing.returncode != 0 and 'serviceaccounts "nobody" not found' in missing.stderr
    # deleting the bound pod (force: no grace) ends the token, the unbound one lives on
    plain = cluster.kubectl("-n", ns, "create", "token", name).stdout.strip()
    cluster.kubectl("-n", ns, "delete", "pod", "bound", "--grace-period=0", "--force")
    assert _get(cluster, f"/api/v1/namespaces/{ns}/pods", token)[0] == 401
    assert _get(cluster, f"/api/v1/namespaces/{ns}/pods", plain)[0] == 200


def test_refused_tokens(cluster: Cluster, account: tuple[str, str]) -> None:
    ns, name = account
    token = cluster.kubectl("-n", ns, "create", "token", name).stdout.strip()
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 200
    # bad signature: the same claims signed by another key
    claims = _claims(token)
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    status, body = _get(cluster, "/api/v1/namespaces", forged)
    assert status == 401 and body["reason"] == "Unauthorized"
    # a tampered payload under the genuine signature
    head, _, sig = token.split(".")
    claims2 = dict(claims, sub="system:serviceaccount:kube-system:default")
    payload = base64.urlsafe_b64encode(json.dumps(claims2).encode()).decode().rstrip("=")
    assert _get(cluster, "/api/v1/namespaces", f"{head}.{payload}.{sig}")[0] == 401
    # expired: signed with the server's own key (it is in the data dir), an hour in the past
    signer = TokenSigner(ensure_signing_key(cluster.data_dir))
    sa_uid = claims["kubernetes.io"]["serviceaccount"]["uid"]
    old, _ = signer.issue(ns, name, sa_uid, list(signer.api_audiences), 600, now=time.time() - 3600)
    assert _get(cluster, "/api/v1/namespaces", old)[0] == 401
    fresh, _ = signer.issue(ns, name, sa_uid, list(signer.api_audiences), 600)
    assert _get(cluster, "/api/v1/namespaces", fresh)[0] == 200
    # a service account deleted, or deleted and made again (another uid), ends its tokens
    cluster.kubectl("-n", ns, "delete", "sa", name)
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 401
    cluster.kubectl("-n", ns, "create", "sa", name)
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 401
    # TokenRequest appears in discovery as kube's serviceaccounts/token subresource
    resources = json.loads(cluster.kubectl("get", "--raw", "/api/v1").stdout)["resources"]
    token_res = next(r for r in resources if r["name"] == "serviceaccounts/token")
    assert token_res["kind"] == "TokenRequest" and token_res["group"] == "authentication.k8s.io"
    assert token_res["verbs"] == ["create"]


def test_secret_bound_token_ends_with_the_secret(cluster: Cluster, account: tuple[str, str]) -> None:
    ns, name = account
    cluster.kubectl("-n", ns, "create", "secret", "generic", "anchor", "--from-literal=a=b")
    token = cluster.kubectl(
        "-n", ns, "create", "token", name, "--bound-object-kind=Secret", "--bound-object-name=anchor"
    ).stdout.strip()  # fmt: skip
    assert _claims(token)["kubernetes.io"]["secret"]["name"] == "anchor"
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 200
    cluster.kubectl("-n", ns, "delete", "secret", "anchor")
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 401


def test_kubelet_token_manager_reuses_then_renews(cluster: Cluster, account: tuple[str, str]) -> None:
    """The node agent's token manager against the real TokenRequest: one token per pod and
    projection until 80 % of its lifetime has passed, then a new one."""
    import asyncio

    from kybern.client import HttpApiClient
    from kybern.plugins.kubelet.tokens import TokenManager

    ns, name = account
    cluster.kubectl(
        "-n", ns, "run", "tm", "--image=busybox:1.36", "--restart=Never", "--overrides",
        json.dumps({"spec": {"serviceAccountName": name}}),
    )  # fmt: skip
    pod = cluster.kjson("-n", ns, "get", "pod", "tm")
    source = {"path": "token", "expirationSeconds": 3607}

    async def scenario() -> tuple[str, str, str, float]:
        async with HttpApiClient(cluster.url, cluster.token, cluster.ca_file) as api:
            manager = TokenManager(api)
            first = await manager.token(pod, source)
            again = await manager.token(pod, source)
            (held,) = manager._tokens.values()
            lifetime = held.expires - held.issued
            held.issued -= 0.81 * lifetime  # as if 80 % of its lifetime had gone by
            held.expires -= 0.81 * lifetime
            renewed = await manager.token(pod, source)
            return first, again, renewed, lifetime

    first, again, renewed, lifetime = asyncio.run(scenario())
    assert first == again and renewed != first
    assert 3600 <= lifetime <= 3608
    claims = _claims(renewed)
    assert claims["kubernetes.io"]["pod"] == {"name": "tm", "uid": pod["metadata"]["uid"]}
    assert claims["exp"] - claims["iat"] == 3607
    assert _get(cluster, f"/api/v1/namespaces/{ns}/pods", renewed)[0] == 200


def test_node_bound_token_ends_with_the_node(cluster: Cluster, account: tuple[str, str]) -> None:
    ns, name = account
    node = f"n-{ns}"
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    node_uid = cluster.kjson("get", "node", node)["metadata"]["uid"]
    token = cluster.kubectl(
        "-n", ns, "create", "token", name, "--bound-object-kind=Node", f"--bound-object-name={node}"
    ).stdout.strip()  # fmt: skip
    assert _claims(token)["kubernetes.io"]["node"] == {"name": node, "uid": node_uid}
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 200
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    req = urllib.request.Request(
        cluster.url + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        status, review = r.status, json.loads(r.read())
    assert status == 201
    assert review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"] == [node]
    cluster.kubectl("delete", "node", node)
    assert _get(cluster, "/api/v1/namespaces", token)[0] == 401
