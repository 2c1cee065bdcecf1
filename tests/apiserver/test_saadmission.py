"""The ServiceAccount admission's volume rules, on pods made by kubectl against a real server
(the API-only server runs no service account controller, so each test makes its accounts)."""

from __future__ import annotations

import json

import kubernetes_validate
from conftest import Cluster

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _pod(cluster: Cluster, ns: str, name: str, spec: dict) -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    return cluster.kjson("-n", ns, "get", "pod", name)


def _token_volumes(pod: dict) -> list[str]:
    return [v["name"] for v in pod["spec"].get("volumes") or [] if v["name"].startswith("kube-api-access-")]


def test_admission_rules(cluster: Cluster) -> None:
    ns = cluster.namespace()
    # no service account yet: admitted without credentials (kube would refuse the pod)
    assert _token_volumes(_pod(cluster, ns, "early", {})) == []
    cluster.kubectl("-n", ns, "create", "sa", "default")
    pod = _pod(
        cluster,
        ns,
        "full",
        {
            "initContainers": [{"name": "i", "image": "busybox:1.36"}],
            "containers": [
                {"name": "a", "image": "busybox:1.36"},
                {
                    "name": "own",
                    "image": "busybox:1.36",
                    "volumeMounts": [{"name": "mine", "mountPath": SA_DIR}],
                },
            ],
            "volumes": [{"name": "mine", "emptyDir": {}}],
        },
    )
    kubernetes_validate.validate(pod, "1.32.0", strict=True)
    (name,) = _token_volumes(pod)
    assert len(name) == len("kube-api-access-") + 5
    mounts = {
        c["name"]: c.get("volumeMounts") for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]
    }
    wanted = {"name": name, "readOnly": True, "mountPath": SA_DIR}
    assert mounts["i"] == [wanted] and mounts["a"] == [wanted]
    assert mounts["own"] == [{"name": "mine", "mountPath": SA_DIR}]  # its own mount is left alone
    # opting out on the pod, on the service account, and the pod overriding its account
    assert _token_volumes(_pod(cluster, ns, "off", {"automountServiceAccountToken": False})) == []
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet", "namespace": ns}}
    cluster.kubectl("create", "-f", "-", input=json.dumps({**sa, "automountServiceAccountToken": False}))
    assert _token_volumes(_pod(cluster, ns, "quiet", {"serviceAccountName": "quiet"})) == []
    loud = _pod(cluster, ns, "loud", {"serviceAccountName": "quiet", "automountServiceAccountToken": True})
    assert len(_token_volumes(loud)) == 1
    # mirror pods get nothing
    mirror = {"annotations": {"kubernetes.io/config.mirror": "x"}}
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mirror", "namespace": ns, **mirror},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    assert _token_volumes(cluster.kjson("-n", ns, "get", "pod", "mirror")) == []
