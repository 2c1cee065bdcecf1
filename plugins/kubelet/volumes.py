"""Pod volumes on the node: each gets a directory under DATA_DIR/pods/UID/volumes that
containers bind-mount (emptyDir, configMap, secret, downwardAPI, projected: those sources and
service account tokens from :mod:`tokens`), or a host path (hostPath, persistentVolumeClaim
through its PersistentVolume's hostPath).

ConfigMap, Secret and downward API files are written like the kubelet's atomic writer: the
payload goes into a fresh timestamped directory, ``..data`` is switched to it with one rename
of a symlink, and each visible file is a symlink through ``..data``, so a reader never sees a
half-updated set and updates reach running containers.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from kybern.client import ApiError
from kybern.plugins.kubelet.containers import ContainerConfigError, field_value, resource_value
from kybern.plugins.kubelet.objcache import ObjectCache
from kybern.plugins.kubelet.tokens import TokenManager
from kybern.quantity import memory_bytes
from kybern.runtime import Mount
from loguru import logger

log = logger.bind(component="kubelet")


class VolumeError(Exception):
    """A volume cannot be set up yet (missing object, unbound claim): event FailedMount."""


def write_atomic(target: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """Make ``target`` hold exactly ``files`` (relative path -> (content, mode)); returns
    whether anything changed."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink():
        current = target / os.readlink(data_link)
        if _same(current, files):
            return False
    else:
        current = None
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(time.time_ns() % 1_000_000_000)
    fresh = target / stamp
    fresh.mkdir()
    for rel, (content, mode) in files.items():
        path = fresh / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, mode)
    os.chmod(fresh, 0o755)
    tmp_link = target / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(stamp, tmp_link)
    os.replace(tmp_link, data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link, ignore_errors=True)
            os.symlink(f"..data/{top}", link)
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in tops:
            entry.unlink()
    if current is not None and current.name != stamp:
        shutil.rmtree(current, ignore_errors=True)
    return True


def _same(current: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    try:
        existing = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
        if existing != set(files):
            return False
        for rel, (content, mode) in files.items():
            path = current / rel
            if path.read_bytes() != content or (path.stat().st_mode & 0o777) != mode:
                return False
        return True
    except OSError:
        return False


def _project(
    data: dict[str, bytes], items: list[dict[str, Any]] | None, mode: int, what: str
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            raise VolumeError(f"configmap/secret {what}: key {key!r} not found")
        out[item.get("path") or key] = (data[key], item.get("mode") or mode)
    return out


async def _source_files(
    pod: dict[str, Any],
    kind: str,
    src: dict[str, Any],
    cache: ObjectCache,
    default_mode: int,
    allocatable: dict[str, str],
) -> dict[str, tuple[bytes, int]]:
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    if kind in ("configMap", "secret"):
        name = src.get("name") if kind == "configMap" else src.get("secretName", src.get("name"))
        resource = "configmaps" if kind == "configMap" else "secrets"
        obj = await cache.get(resource, namespace, name or "")
        if obj is None:
            if src.get("optional"):
                return {}
            raise VolumeError(f'{resource[:-1]} "{name}" not found')
        if kind == "configMap":
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return _project(data, src.get("items"), src.get("defaultMode") or default_mode, f"{namespace}/{name}")
    if kind == "downwardAPI":
        out: dict[str, tuple[bytes, int]] = {}
        for item in src.get("items") or []:
            try:
                if item.get("fieldRef"):
                    value = field_value(pod, item["fieldRef"].get("fieldPath", ""))
                elif item.get("resourceFieldRef"):
                    value = resource_value(pod, item["resourceFieldRef"], None, allocatable)
                else:
                    continue
            except ContainerConfigError as exc:
                raise VolumeError(str(exc)) from None
            out[item.get("path", "")] = (
                value.encode(),
                item.get("mode") or src.get("defaultMode") or default_mode,
            )
        return out
    return {}


class VolumeManager:
    """Prepares and removes the volumes of pods on one node."""

    def __init__(self, data_dir: Path, cache: ObjectCache, node_name: str) -> None:
        self.pods_dir = data_dir / "pods"
        self.cache = cache
        self.node_name = node_name
        #: service account tokens of projected volumes (requested through the same client)
        self.tokens = TokenManager(cache.api)
        #: claim -> host path, for PVC volumes (set by the local-path provisioner)
        self.claim_paths: dict[tuple[str, str], str] = {}

    async def _token(self, pod: dict[str, Any], source: dict[str, Any]) -> bytes:
        try:
            return (await self.tokens.token(pod, source)).encode()
        except ApiError as exc:
            raise VolumeError(f"failed to fetch token: {exc}") from None

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    async def prepare(
        self, pod: dict[str, Any], allocatable: dict[str, str], claims: Any = None
    ) -> dict[str, Mount]:
        """Set up (or refresh) every volume; returns volume name -> host side."""
        volumes = (pod.get("spec") or {}).get("volumes") or []
        if not volumes:
            return {}  # nothing to set up (hollow nodes' pods, mostly): no paths to build
        uid = (pod.get("metadata") or {}).get("uid", "")
        base = self.pod_dir(uid) / "volumes"
        mounts: dict[str, Mount] = {}
        for vol in volumes:
            name = vol.get("name", "")
            if "emptyDir" in vol:
                ed = vol.get("emptyDir") or {}
                path = base / "empty-dir" / name
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)  # any container user may write, as in the kubelet
                if ed.get("medium") == "Memory":
                    size = memory_bytes(ed["sizeLimit"]) if ed.get("sizeLimit") else None
                    if not _mount_tmpfs(path, size):  # not root: one tmpfs per container
                        mounts[name] = Mount(container_path="", tmpfs=True, tmpfs_size=size)
                        continue
                mounts[name] = Mount(container_path="", host_path=str(path))
            elif "hostPath" in vol:
                hp = vol["hostPath"] or {}
                path = Path(hp.get("path", "/"))
                kind = hp.get("type") or ""
                if kind == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                elif kind == "FileOrCreate" and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                elif kind in ("Directory", "File", "Socket") and not path.exists():
                    raise VolumeError(f"hostPath type check failed: {path} does not exist")
                mounts[name] = Mount(container_path="", host_path=str(path))
            elif any(k in vol for k in ("configMap", "secret", "downwardAPI", "projected")):
                kind = next(k for k in ("configMap", "secret", "downwardAPI", "projected") if k in vol)
                src = vol.get(kind) or {}
                files: dict[str, tuple[bytes, int]] = {}
                if kind == "projected":
                    mode = src.get("defaultMode") or 0o644
                    for source in src.get("sources") or []:
                        token_src = source.get("serviceAccountToken")
                        if token_src is not None:
                            files[token_src.get("path") or "token"] = (
                                await self._token(pod, token_src),
                                mode,
                            )
                        for sub_kind in ("configMap", "secret", "downwardAPI"):
                            if sub_kind in source:
                                files.update(
                                    await _source_files(
                                        pod, sub_kind, source[sub_kind] or {}, self.cache, mode, allocatable
                                    )
                                )
                else:
                    files = await _source_files(pod, kind, src, self.cache, 0o644, allocatable)
                path = base / kind.lower() / name
                write_atomic(path, files)
                mounts[name] = Mount(container_path="", host_path=str(path), read_only=True)
            elif "persistentVolumeClaim" in vol:
                claim = (vol.get("persistentVolumeClaim") or {}).get("claimName", "")
                namespace = (pod.get("metadata") or {}).get("namespace") or "default"
                if claims is None:
                    raise VolumeError(f"persistentvolumeclaim {claim!r} cannot be mounted here")
                host = await claims.host_path(namespace, claim)
                read_only = bool((vol.get("persistentVolumeClaim") or {}).get("readOnly"))
                mounts[name] = Mount(container_path="", host_path=host, read_only=read_only)
            else:
                raise VolumeError(f"volume {name!r}: unsupported volume type")
        return mounts

    def cleanup(self, uid: str) -> None:
        self.tokens.forget(uid)
        base = self.pod_dir(uid)
        if not base.exists():
            return
        tmpfs_root = base / "volumes" / "empty-dir"
        if tmpfs_root.exists():
            for path in tmpfs_root.iterdir():
                if os.path.ismount(path):
                    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _mount_tmpfs(path: Path, size: int | None) -> bool:
    if os.path.ismount(path):
        return True
    if os.geteuid() != 0:
        return False
    options = "mode=0777" + (f",size={size}" if size else "")
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        log.warning("tmpfs for {} failed ({}); using a per-container tmpfs", path, out.stderr.strip())
        return False
    return True
