"""The service account controller: a ``default`` ServiceAccount in every namespace."""

from __future__ import annotations

import json

import pytest
from conftest import create_namespace, kubectl_json, wait_for
from support.cluster import Server

pytestmark = pytest.mark.timeout(120)


def default_sa(server: Server, ns: str) -> dict | None:
    out = server.kubectl("get", "serviceaccount", "default", "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def test_every_namespace_has_a_default_service_account(server: Server) -> None:
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        wait_for(lambda ns=ns: default_sa(server, ns), what=f"default SA in {ns}")
    ns = create_namespace(server, "sa-new")
    sa = wait_for(lambda: default_sa(server, ns), what="default SA in a new namespace")
    assert sa["metadata"]["namespace"] == ns


def test_a_deleted_default_service_account_comes_back(server: Server) -> None:
    ns = create_namespace(server, "sa-again")
    first = wait_for(lambda: default_sa(server, ns), what="default SA")
    server.kubectl("delete", "serviceaccount", "default", "-n", ns)
    again = wait_for(
        lambda: (sa := default_sa(server, ns)) and sa["metadata"]["uid"] != first["metadata"]["uid"] and sa,
        what="default SA recreated",
    )
    assert again["metadata"]["name"] == "default"
    # other service accounts are left alone
    server.kubectl("create", "serviceaccount", "robot", "-n", ns)
    server.kubectl("delete", "serviceaccount", "robot", "-n", ns)
    names = [s["metadata"]["name"] for s in kubectl_json(server, "get", "serviceaccounts", "-n", ns)["items"]]
    assert names == ["default"]
