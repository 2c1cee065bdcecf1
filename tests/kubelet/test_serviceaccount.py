"""Service account credentials in real Podman pods: the admission-made ``kube-api-access-*``
volume carries a token bound to the pod, the cluster CA and the namespace, where in-cluster
clients look; the official Python client's in-cluster loader reads them and reaches the API;
``automountServiceAccountToken: false`` leaves them out."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest

from .nodes import BUSYBOX, Cluster

pytestmark = pytest.mark.podman

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def manifest(name: str, extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
{extra}
  initContainers:
  - {{name: init, image: {BUSYBOX}, command: ["sh", "-c", "cat {SA_DIR}/namespace > /work/ns || true"],
      volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - {{name: main, image: {BUSYBOX}, command: ["sleep", "3600"],
      volumeMounts: [{{name: work, mountPath: /work}}]}}
  volumes:
  - {{name: work, emptyDir: {{}}}}
"""


def running(cluster: Cluster, name: str) -> bool:
    return (cluster.pod(name).get("status") or {}).get("phase") == "Running"


def test_pod_gets_token_ca_and_namespace(cluster: Cluster, tmp_path: Path) -> None:
    cluster.wait_for(
        "kube-root-ca.crt in default",
        lambda: cluster.kubectl("get", "cm", "kube-root-ca.crt", check=False).returncode == 0,
    )
    cluster.apply(manifest("sa-pod"))
    cluster.wait_for("sa-pod Running", lambda: running(cluster, "sa-pod"), timeout=90)
    pod = cluster.pod("sa-pod")
    kubernetes_validate.validate(pod, "1.32.0", strict=True)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    (volume,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert volume["projected"] == {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
        "defaultMode": 420,
    }
    for ctr in spec["initContainers"] + spec["containers"]:
        assert {"name": volume["name"], "readOnly": True, "mountPath": SA_DIR} in ctr["volumeMounts"]
    node = cluster.nodes[0]
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("podman://")
    assert node.cli("exec", cid, "cat", "/work/ns") == "default"  # the init container saw it too
    token = node.cli("exec", cid, "cat", f"{SA_DIR}/token")
    ca = node.cli("exec", cid, "cat", f"{SA_DIR}/ca.crt")
    assert node.cli("exec", cid, "cat", f"{SA_DIR}/namespace") == "default"
    assert ca.strip() == (cluster.server.data_dir / "tls" / "ca.crt").read_text().strip()
    writable = node.cli("exec", cid, "sh", "-c", f"touch {SA_DIR}/x 2>/dev/null && echo rw || echo ro")
    assert writable.strip() == "ro"
    env = dict(line.split("=", 1) for line in node.cli("exec", cid, "env").splitlines() if "=" in line)
    svc = cluster.json("get", "svc", "kubernetes", "-n", "default")
    assert env["KUBERNETES_SERVICE_HOST"] == svc["spec"]["clusterIP"]
    assert env["KUBERNETES_SERVICE_PORT"] == "443" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == f"tcp://{svc['spec']['clusterIP']}:443"
    # the official client's in-cluster loader, given the pod's files (the API on the host port)
    from kubernetes import client
    from kubernetes.config.incluster_config import InClusterConfigLoader

    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text(ca)
    conf = client.Configuration()
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cluster.server.port)}
    InClusterConfigLoader(str(tmp_path / "token"), str(tmp_path / "ca.crt"), environ=environ).load_and_set(
        conf
    )
    with client.ApiClient(conf) as api:
        names = [p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod("default").items]
        assert "sa-pod" in names
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview(metadata=client.V1ObjectMeta())
        )
    info = review.status.user_info
    assert info.username == "system:serviceaccount:default:default"
    assert info.extra["authentication.kubernetes.io/pod-name"] == ["sa-pod"]
    assert info.extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    assert info.extra["authentication.kubernetes.io/node-name"] == ["node-a"]
    # the token is bound to the pod: deleting the pod ends it (after kube's 60 s grace, so force)
    cluster.kubectl("delete", "pod", "sa-pod", "--grace-period=0", "--force")
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"https://127.0.0.1:{cluster.server.port}/api/v1/namespaces",
        headers={"Authorization": f"Bearer {token}"},
    )
    import ssl

    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert err.value.code == 401


def test_automount_false_gives_no_credentials(cluster: Cluster) -> None:
    cluster.apply(manifest("no-sa", "  automountServiceAccountToken: false"))
    cluster.wait_for("no-sa Running", lambda: running(cluster, "no-sa"), timeout=90)
    pod = cluster.pod("no-sa")
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["work"]
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("podman://")
    out = cluster.nodes[0].cli("exec", cid, "sh", "-c", f"ls {SA_DIR} 2>&1 || true")
    assert "No such file" in out
    # opting out on the service account works the same
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "quiet"},
                "automountServiceAccountToken": False,
            }
        )
    )
    cluster.apply(manifest("quiet-pod", "  serviceAccountName: quiet"))
    assert [v["name"] for v in cluster.pod("quiet-pod")["spec"]["volumes"]] == ["work"]
    cluster.kubectl("delete", "pod", "no-sa", "quiet-pod", "--grace-period=0", "--force")
