"""The root CA publisher: ``kube-root-ca.crt`` (the cluster CA) in every namespace, put back
when deleted or changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import create_namespace, wait_for
from support.cluster import Server

pytestmark = pytest.mark.timeout(120)


def root_ca(server: Server, ns: str) -> dict | None:
    out = server.kubectl("get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def test_every_namespace_has_the_cluster_ca(server: Server) -> None:
    ca = (Path(server.data_dir) / "tls" / "ca.crt").read_text()
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        cm = wait_for(lambda ns=ns: root_ca(server, ns), what=f"kube-root-ca.crt in {ns}")
        assert cm["data"] == {"ca.crt": ca}
        assert "kubernetes.io/description" in cm["metadata"]["annotations"]
    ns = create_namespace(server, "rootca")
    first = wait_for(lambda: root_ca(server, ns), what="kube-root-ca.crt in a new namespace")
    assert first["data"] == {"ca.crt": ca}
    # deleted: made again
    server.kubectl("delete", "configmap", "kube-root-ca.crt", "-n", ns)
    again = wait_for(
        lambda: (cm := root_ca(server, ns)) and cm["metadata"]["uid"] != first["metadata"]["uid"] and cm,
        what="kube-root-ca.crt recreated",
    )
    assert again["data"] == {"ca.crt": ca}
    # changed: put back
    patch = json.dumps({"data": {"ca.crt": "garbage", "extra": "x"}})
    server.kubectl("patch", "configmap", "kube-root-ca.crt", "-n", ns, "--type=merge", "-p", patch)
    wait_for(lambda: (cm := root_ca(server, ns)) and cm["data"] == {"ca.crt": ca}, what="data restored")
