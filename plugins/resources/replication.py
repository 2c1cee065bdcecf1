"""ReplicationController (core/v1): the map-selector ancestor of ReplicaSet, still served by kube.

Rules follow kube's ``SetDefaults_ReplicationController`` and ``ValidateReplicationController``:
the selector and the object's labels default from the template's labels, the selector must be
non-empty and match the template (its selector is a plain label map, unlike ReplicaSet's), and
unlike ReplicaSet the selector may change after creation.
"""

from __future__ import annotations

from typing import Any

from kybern.plugins.resources.common import (
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    JSON,
    NAME_COLUMN,
    GoStringMap,
    age_of,
    dig,
    ensure,
    format_labels,
    layout_containers,
    name_of,
)
from kybern.plugins.resources.pod_defaults import default_pod_template
from kybern.plugins.resources.pod_validation import validate_pod_template
from kybern.resources import FieldError, TableColumn
from kybern.validation import (
    forbidden,
    invalid,
    not_supported,
    required,
    validate_labels,
    validate_nonnegative,
)


def default_replication_controller(rc: JSON) -> None:
    spec = ensure(rc, "spec")
    template = spec.get("template")
    labels = dig(template, "metadata", "labels") if isinstance(template, dict) else None
    if labels is not None:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = ensure(rc, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if isinstance(template, dict):
        default_pod_template(template)


def _template_errors(spec: JSON) -> list[FieldError]:
    """ValidatePodTemplateSpecForRC: the template exists, matches the selector, restarts Always."""
    template = spec.get("template")
    if template is None:
        return [required("spec.template")]
    errs: list[FieldError] = []
    selector = spec.get("selector") or {}
    labels = dig(template, "metadata", "labels")
    if selector and any((labels or {}).get(k) != v for k, v in selector.items()):
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                GoStringMap.of(labels),
                "`selector` does not match template `labels`",
            )
        )
    errs.extend(validate_pod_template(template, "spec.template"))
    restart = dig(template, "spec", "restartPolicy", default="")
    if restart != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", restart, ("Always",)))
    if dig(template, "spec", "activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return errs


def validate_replication_controller(new: JSON, old: JSON | None) -> list[FieldError]:
    """ValidateReplicationControllerSpec (the same on create and update: the selector is mutable)."""
    spec = new.get("spec") or {}
    errs = validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = spec.get("selector") or {}
    if not selector:
        errs.append(required("spec.selector"))
    else:
        errs.extend(validate_labels(selector, "spec.selector"))
    errs.extend(validate_nonnegative(spec.get("replicas"), "spec.replicas"))
    errs.extend(_template_errors(spec))
    if old is not None:
        # the status subresource writes only status, the main resource keeps the old one: an
        # update is where ValidateReplicationControllerStatusUpdate applies
        errs.extend(validate_replication_controller_status(new.get("status") or {}))
    return errs


def validate_replication_controller_status(status: JSON) -> list[FieldError]:
    """ValidateReplicationControllerStatus: counts are non-negative and nest inside replicas."""
    errs: list[FieldError] = []
    for key in (
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ):
        errs.extend(validate_nonnegative(status.get(key), f"status.{key}"))
    replicas = status.get("replicas") or 0
    ready = status.get("readyReplicas") or 0
    for key in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        value = status.get(key) or 0
        if value > replicas:
            errs.append(invalid(f"status.{key}", value, "cannot be greater than status.replicas"))
    available = status.get("availableReplicas") or 0
    if available > ready:
        errs.append(invalid("status.availableReplicas", available, "cannot be greater than readyReplicas"))
    return errs


REPLICATION_CONTROLLER_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Desired", "integer", "", "Replicas is the number of desired replicas."),
    TableColumn("Current", "integer", "", "Replicas is the most recently observed number of replicas."),
    TableColumn(
        "Ready",
        "integer",
        "",
        "The number of ready replicas for this replication controller.",
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    TableColumn(
        "Selector",
        "string",
        "",
        "Selector is a label query over pods that should match the Replicas count.",
        1,
    ),
)


def replication_controller_row(rc: JSON) -> list[Any]:
    spec = rc.get("spec") or {}
    status = rc.get("status") or {}
    names, images = layout_containers(dig(spec, "template", "spec", "containers"))
    return [
        name_of(rc),
        spec.get("replicas") or 0,
        status.get("replicas") or 0,
        status.get("readyReplicas") or 0,
        age_of(rc),
        names,
        images,
        format_labels(spec.get("selector")),
    ]
