"""A local-path provisioner for persistentVolumeClaim volumes (like Rancher's, which k3s
ships): a directory per claim under DATA_DIR/storage on the node that runs the first pod
using the claim.

Choice: provisioning happens in the kubelet of that node, when a pod needs the claim
(WaitForFirstConsumer binding, done by the consumer's node), not in a central controller.
Two agents can then never race for a claim, and the PV carries a nodeAffinity for the node
whose disk holds it, so the scheduler keeps later pods of the claim there. Claims of the
``local-path`` StorageClass (or without a class, when ``local-path`` is the default) are
provisioned; claims already bound to a PV with a hostPath or local source are used as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kybern.client import ApiClient, ApiError
from kybern.plugins.kubelet.volumes import VolumeError
from loguru import logger

log = logger.bind(component="kubelet")

STORAGE_CLASS = "local-path"
PROVISIONER = "kybern.io/local-path"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


async def ensure_storage_class(api: ApiClient) -> None:
    """Create the default ``local-path`` StorageClass if the API serves StorageClasses."""
    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    try:
        await api.create("storageclasses.storage.k8s.io", body)
        log.info("created default StorageClass {}", STORAGE_CLASS)
    except ApiError as exc:
        if not (exc.already_exists or exc.not_found):
            log.warning("creating StorageClass {} failed: {}", STORAGE_CLASS, exc)


class ClaimResolver:
    def __init__(self, api: ApiClient, data_dir: Path, node_name: str) -> None:
        self.api = api
        self.storage_dir = data_dir / "storage"
        self.node_name = node_name

    async def host_path(self, namespace: str, claim_name: str) -> str:
        try:
            pvc = await self.api.get("persistentvolumeclaims", claim_name, namespace=namespace)
        except ApiError as exc:
            if exc.not_found:
                raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found') from None
            raise
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if volume_name:
            try:
                pv = await self.api.get("persistentvolumes", volume_name)
            except ApiError as exc:
                if exc.not_found:
                    raise VolumeError(f'persistentvolume "{volume_name}" not found') from None
                raise
            return self._path_of(pv)
        cls = (pvc.get("spec") or {}).get("storageClassName")
        if cls not in (None, STORAGE_CLASS):
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound (class {cls!r})')
        return await self._provision(pvc)

    @staticmethod
    def _path_of(pv: dict[str, Any]) -> str:
        spec = pv.get("spec") or {}
        source = spec.get("hostPath") or spec.get("local")
        if not source or not source.get("path"):
            raise VolumeError(f"persistentvolume {pv['metadata']['name']} has no hostPath or local source")
        path = Path(source["path"])
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    async def _provision(self, pvc: dict[str, Any]) -> str:
        meta = pvc["metadata"]
        spec = pvc.get("spec") or {}
        pv_name = f"pvc-{meta['uid']}"
        path = self.storage_dir / f"{pv_name}_{meta['namespace']}_{meta['name']}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi"
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [self.node_name],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        }
        try:
            await self.api.create("persistentvolumes", pv)
        except ApiError as exc:
            if not exc.already_exists:
                raise VolumeError(f"provisioning {pv_name}: {exc}") from None
        await self.api.patch(
            "persistentvolumes", pv_name, {"status": {"phase": "Bound"}}, subresource="status"
        )
        claim_patch = {
            "metadata": {
                "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                    "volume.kubernetes.io/selected-node": self.node_name,
                }
            },
            "spec": {
                "volumeName": pv_name,
                **({} if spec.get("storageClassName") else {"storageClassName": STORAGE_CLASS}),
            },
        }
        await self.api.patch("persistentvolumeclaims", meta["name"], claim_patch, namespace=meta["namespace"])
        await self.api.patch(
            "persistentvolumeclaims",
            meta["name"],
            {
                "status": {
                    "phase": "Bound",
                    "capacity": {"storage": size},
                    "accessModes": pv["spec"]["accessModes"],
                }
            },
            namespace=meta["namespace"],
            subresource="status",
        )
        log.info("provisioned {} for claim {}/{} at {}", pv_name, meta["namespace"], meta["name"], path)
        return str(path)
