"""PersistentVolume and PersistentVolumeClaim (core/v1): defaulting, validation, table rows."""

from __future__ import annotations

import copy
from typing import Any

from kybern.plugins.resources.common import AGE_COLUMN, JSON, NAME_COLUMN, age_of, dig, ensure, name_of
from kybern.plugins.resources.pod_validation import validate_quantity
from kybern.quantity import format_quantity, parse_quantity
from kybern.resources import FieldError, TableColumn
from kybern.validation import (
    forbidden,
    invalid,
    is_dns1123_subdomain,
    not_supported,
    required,
    validate_immutable,
)

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
PV_SOURCES = (
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
    "iscsi",
)
_ACCESS_MODE_SHORT = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def _canonical(values: JSON | None) -> None:
    if isinstance(values, dict):
        for name, value in list(values.items()):
            try:
                values[name] = format_quantity(value)
            except ValueError:
                pass


def default_pv(pv: JSON) -> None:
    spec = ensure(pv, "spec")
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    host_path = spec.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    _canonical(spec.get("capacity"))
    status = ensure(pv, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def default_pvc(pvc: JSON) -> None:
    """SetDefaults_PersistentVolumeClaim(+Spec): volumeMode Filesystem, phase Pending."""
    spec = ensure(pvc, "spec")
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    _canonical(dig(spec, "resources", "requests"))
    _canonical(dig(spec, "resources", "limits"))
    status = ensure(pvc, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"
    _canonical(status.get("capacity"))


def _copy_key(dst: JSON, src: JSON, key: str) -> None:
    if key in src:
        dst[key] = src[key]
    else:
        dst.pop(key, None)


def _access_mode_errors(modes: list[str] | None, path: str, detail: str) -> list[FieldError]:
    if not modes:
        return [required(path, detail)]
    return [not_supported(path, mode, ACCESS_MODES) for mode in modes if mode not in ACCESS_MODES]


def validate_pv(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    errs = _access_mode_errors(spec.get("accessModes"), "spec.accessModes", "")
    capacity = spec.get("capacity") or {}
    if not capacity:
        errs.append(required("spec.capacity"))
    elif "storage" not in capacity or len(capacity) > 1:
        errs.append(not_supported("spec.capacity", capacity, ("storage",)))
    else:
        q_errs, _ = validate_quantity(capacity["storage"], "spec.capacity[storage]")
        errs.extend(q_errs)
    policy = spec.get("persistentVolumeReclaimPolicy") or ""
    if policy and policy not in RECLAIM_POLICIES:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
    mode = spec.get("volumeMode")
    if mode and mode not in VOLUME_MODES:
        errs.append(not_supported("spec.volumeMode", mode, VOLUME_MODES))
    sources = [k for k in PV_SOURCES if spec.get(k) is not None]
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    for extra in sources[1:]:
        errs.append(forbidden(f"spec.{extra}", "may not specify more than 1 volume type"))
    if "hostPath" in sources and not dig(spec, "hostPath", "path"):
        errs.append(required("spec.hostPath.path"))
    if "local" in sources:
        if not dig(spec, "local", "path"):
            errs.append(required("spec.local.path"))
        if spec.get("nodeAffinity") is None:
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    class_name = spec.get("storageClassName") or ""
    if class_name:
        errs.extend(invalid("spec.storageClassName", class_name, m) for m in is_dns1123_subdomain(class_name))
    if old is not None:
        old_spec = old.get("spec") or {}
        if any(spec.get(k) != old_spec.get(k) for k in PV_SOURCES):
            errs.append(
                forbidden(
                    "spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation"
                )
            )
        errs.extend(validate_immutable(spec.get("volumeMode"), old_spec.get("volumeMode"), "spec.volumeMode"))
        if old_spec.get("nodeAffinity") is not None:
            errs.extend(
                validate_immutable(spec.get("nodeAffinity"), old_spec["nodeAffinity"], "spec.nodeAffinity")
            )
    return errs


def validate_pvc(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    errs = _access_mode_errors(
        spec.get("accessModes"), "spec.accessModes", "at least 1 access mode is required"
    )
    storage = dig(spec, "resources", "requests", "storage")
    if storage is None:
        errs.append(required("spec.resources[storage]"))
    else:
        q_errs, amount = validate_quantity(storage, "spec.resources[storage]")
        errs.extend(q_errs)
        if amount is not None and amount <= 0:
            errs.append(
                invalid("spec.resources[storage]", format_quantity(storage), "must be greater than zero")
            )
    mode = spec.get("volumeMode")
    if mode and mode not in VOLUME_MODES:
        errs.append(not_supported("spec.volumeMode", mode, VOLUME_MODES))
    class_name = spec.get("storageClassName") or ""
    if class_name:
        errs.extend(invalid("spec.storageClassName", class_name, m) for m in is_dns1123_subdomain(class_name))
    if old is not None:
        old_spec = old.get("spec") or {}
        munged = copy.deepcopy(spec)
        bound = bool(old_spec.get("volumeName"))
        if not bound:
            _copy_key(munged, old_spec, "volumeName")  # binding sets volumeName once
        else:
            resources = munged.get("resources") or {}
            _copy_key(resources, old_spec.get("resources") or {}, "requests")
            if resources:
                munged["resources"] = resources
            else:
                munged.pop("resources", None)
        _copy_key(munged, old_spec, "volumeAttributesClassName")
        if munged != old_spec:
            errs.append(
                forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName "
                    "for bound claims",
                )
            )
        elif bound and storage is not None:
            old_storage = dig(old_spec, "resources", "requests", "storage")
            try:
                if old_storage is not None and parse_quantity(storage) < parse_quantity(old_storage):
                    errs.append(
                        forbidden(
                            "spec.resources.requests.storage", "field can not be less than previous value"
                        )
                    )
            except ValueError:
                pass
    return errs


def access_modes_text(modes: list[str] | None) -> str:
    modes = modes or []
    return ",".join(short for mode, short in _ACCESS_MODE_SHORT if mode in modes)


PV_COLUMNS = (
    NAME_COLUMN,
    TableColumn(
        "Capacity",
        "string",
        "",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    TableColumn("Access Modes", "string", "", "accessModes contains all ways the volume can be mounted."),
    TableColumn(
        "Reclaim Policy",
        "string",
        "",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released "
        "from its claim.",
    ),
    TableColumn(
        "Status",
        "string",
        "",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    TableColumn(
        "Claim",
        "string",
        "",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    TableColumn("StorageClass", "string", "", "StorageClass of the pv"),
    TableColumn("VolumeAttributesClass", "string", "", "VolumeAttributesClass of the pv"),
    TableColumn(
        "Reason",
        "string",
        "",
        "reason is a brief CamelCase string that describes any failure and is meant for machine "
        "parsing and tidy display in the CLI.",
    ),
    AGE_COLUMN,
    TableColumn(
        "VolumeMode",
        "string",
        "",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to "
        "remain in raw block state.",
        1,
    ),
)


def _storage_class(obj: JSON) -> str:
    annotation = dig(obj, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class")
    if annotation is not None:
        return annotation
    return dig(obj, "spec", "storageClassName", default="")


def _quantity_text(value: Any) -> str:
    if value is None:
        return "0"
    try:
        return format_quantity(value)
    except ValueError:
        return str(value)


def pv_row(pv: JSON) -> list[Any]:
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace') or ''}/{claim.get('name') or ''}" if claim else ""
    phase = dig(pv, "status", "phase", default="")
    if dig(pv, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    return [
        name_of(pv),
        _quantity_text(dig(spec, "capacity", "storage")),
        access_modes_text(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        phase,
        claim_text,
        _storage_class(pv),
        spec.get("volumeAttributesClassName") or "<unset>",
        dig(pv, "status", "reason", default=""),
        age_of(pv),
        spec.get("volumeMode") or "<unset>",
    ]


PVC_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Status", "string", "", "phase represents the current phase of PersistentVolumeClaim."),
    TableColumn(
        "Volume",
        "string",
        "",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    TableColumn(
        "Capacity", "string", "", "capacity represents the actual resources of the underlying volume."
    ),
    TableColumn(
        "Access Modes",
        "string",
        "",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    TableColumn("StorageClass", "string", "", "StorageClass of the pvc"),
    TableColumn("VolumeAttributesClass", "string", "", "VolumeAttributesClass of the pvc"),
    AGE_COLUMN,
    TableColumn(
        "VolumeMode", "string", "", "volumeMode defines what type of volume is required by the claim.", 1
    ),
)


def pvc_row(pvc: JSON) -> list[Any]:
    spec = pvc.get("spec") or {}
    status = pvc.get("status") or {}
    phase = status.get("phase") or ""
    if dig(pvc, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    capacity, modes = "", ""
    if spec.get("volumeName"):
        modes = access_modes_text(status.get("accessModes"))
        capacity = _quantity_text(dig(status, "capacity", "storage"))
    return [
        name_of(pvc),
        phase,
        spec.get("volumeName") or "",
        capacity,
        modes,
        _storage_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        age_of(pvc),
        spec.get("volumeMode") or "<unset>",
    ]
