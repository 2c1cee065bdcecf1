"""The ServiceAccount admission plugin's token volume: on pod create, a projected
``kube-api-access-XXXXX`` volume (a bound service account token, the cluster CA from the
``kube-root-ca.crt`` ConfigMap, the namespace) mounted read-only at
``/var/run/secrets/kubernetes.io/serviceaccount`` in every container and init container, which is
what in-cluster clients (``config.load_incluster_config()``) read.

Not when the pod or its service account sets ``automountServiceAccountToken: false``, for
mirror pods, nor in a container that already mounts something at that path. Where kube refuses a
pod whose service account does not exist (403), kybern admits it without the volume: clusters run
without the controller manager (no ``default`` service account) must keep running pods.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kybern.plugins.apiserver.storage import Storage

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
#: kube's token lifetime for these volumes (3607 s marks them as admission-made)
TOKEN_EXPIRATION_S = 3607
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
#: apimachinery's utilrand alphabet (no vowels, no confusable characters)
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def token_volume(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_S, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
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
            "defaultMode": 0o644,
        },
    }


def _has_token_volume(spec: dict[str, Any]) -> bool:
    for vol in spec.get("volumes") or []:
        for source in (vol.get("projected") or {}).get("sources") or []:
            if source.get("serviceAccountToken") is not None and str(vol.get("name", "")).startswith(
                VOLUME_PREFIX
            ):
                return True
    return False


def add_token_volume(pod: dict[str, Any], service_account: dict[str, Any] | None) -> bool:
    """Mount the token volume into ``pod`` (in place) as kube's admission does; returns whether
    it did. ``service_account`` is the pod's ServiceAccount, None when it does not exist."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec")
    if not isinstance(spec, dict) or service_account is None:
        return False
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = service_account.get("automountServiceAccountToken")
    if automount is False or _has_token_volume(spec):
        return False
    taken = {v.get("name") for v in spec.get("volumes") or []}
    name = ""
    while not name or name in taken:
        name = VOLUME_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(5))
    spec.setdefault("volumes", []).append(token_volume(name))
    for key in ("initContainers", "containers"):
        for ctr in spec.get(key) or []:
            mounts = ctr.get("volumeMounts") or []
            if any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            ctr["volumeMounts"] = [*mounts, {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}]
    return True


async def admit_pod(storage: Storage, pod: dict[str, Any], namespace: str) -> None:
    """Look the pod's service account up (watch cache, then the store) and add the volume."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if not isinstance(sa_name, str):
        return
    rt = storage.registry.lookup("", "v1", "serviceaccounts")
    if rt is None:
        return
    cached = storage.cache.cache_for(rt).objects.get(storage.registry.key(rt, namespace, sa_name))
    sa = cached.obj if cached is not None else await storage.get_or_none(rt, namespace, sa_name)
    add_token_volume(pod, sa)
