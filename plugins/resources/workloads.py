"""Deployment, ReplicaSet, DaemonSet, StatefulSet and ControllerRevision (apps/v1) strategies."""

from __future__ import annotations

import copy
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
    format_label_selector,
    format_labels,
    layout_containers,
    name_of,
    selector_matches,
    selector_string,
)
from kybern.plugins.resources.pod_defaults import default_pod_template
from kybern.plugins.resources.pod_validation import validate_pod_template
from kybern.plugins.resources.storage import default_pvc
from kybern.resources import FieldError, TableColumn
from kybern.validation import (
    FIELD_IMMUTABLE,
    forbidden,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_percent,
    not_supported,
    required,
    validate_annotations,
    validate_immutable,
    validate_labels,
    validate_nonnegative,
)

# --------------------------------------------------------------------------- shared rules


def validate_label_selector(selector: JSON | None, path: str) -> list[FieldError]:
    """ValidateLabelSelector: operators, values and keys of match expressions, matchLabels."""
    errs: list[FieldError] = []
    if selector is None:
        return errs
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator") or ""
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    )
                )
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
        key = expr.get("key") or ""
        errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
    errs.extend(validate_labels(selector.get("matchLabels"), f"{path}.matchLabels"))
    return errs


def selector_parses(selector: JSON | None) -> bool:
    """Whether metav1.LabelSelectorAsSelector accepts the selector (nil counts as valid)."""
    for expr in (selector or {}).get("matchExpressions") or []:
        op, values = expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            return False
        if op in ("Exists", "DoesNotExist") and values:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist") or is_qualified_name(expr.get("key") or ""):
            return False
    return True


def _selector_errors(spec: JSON, kind: str) -> list[FieldError]:
    selector = spec.get("selector")
    if selector is None:
        return [required("spec.selector")]
    errs = validate_label_selector(selector, "spec.selector")
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.append(invalid("spec.selector", selector, f"empty selector is invalid for {kind}"))
    return errs


def validate_template_for_controller(
    spec: JSON, kind_label: str, skip_on_bad_selector: bool = True, full_pod_spec: bool = True
) -> list[FieldError]:
    """ValidatePodTemplateSpecForReplicaSet and its DaemonSet/StatefulSet variants.

    A missing selector selects nothing, so the labels never match (an empty one matches all).
    Deployments and ReplicaSets report an unparsable selector instead of checking the template;
    DaemonSets only skip the match. StatefulSet templates get no PodSpec validation in kube
    (their volume mounts may name volumeClaimTemplates), only labels and annotations.
    """
    selector = spec.get("selector")
    parses = selector_parses(selector)
    if not parses and skip_on_bad_selector:
        return [invalid("spec.selector", selector, "invalid label selector")]
    template = spec.get("template")
    if template is None:
        return [required("spec.template")]
    errs: list[FieldError] = []
    labels = dig(template, "metadata", "labels")
    selects_something = selector is None or bool(
        selector.get("matchLabels") or selector.get("matchExpressions")
    )
    if parses and selects_something and not selector_matches(selector, labels):
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                GoStringMap.of(labels),
                "`selector` does not match template `labels`",
            )
        )
    if full_pod_spec:
        errs.extend(validate_pod_template(template, "spec.template"))
    else:
        errs.extend(validate_labels(labels, "spec.template.labels"))
        errs.extend(
            validate_annotations(dig(template, "metadata", "annotations"), "spec.template.annotations")
        )
    restart = dig(template, "spec", "restartPolicy", default="")
    if restart != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", restart, ("Always",)))
    if dig(template, "spec", "activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                f"activeDeadlineSeconds in {kind_label} is not Supported",
            )
        )
    return errs


def _int_or_percent_errors(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        return [invalid(path, value, m) for m in is_valid_percent(value)]
    return validate_nonnegative(value, path)


def _int_or_percent_value(value: Any) -> int | None:
    if isinstance(value, str):
        return int(value[:-1]) if value.endswith("%") and value[:-1].isdigit() else None
    return value if isinstance(value, int) else None


def _not_more_than_100(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str) and (_int_or_percent_value(value) or 0) > 100:
        return [invalid(path, value, "must not be greater than 100%")]
    return []


def _rolling_update_errors(rolling: JSON, path: str) -> list[FieldError]:
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = _int_or_percent_errors(unavailable, f"{path}.maxUnavailable")
    errs.extend(_int_or_percent_errors(surge, f"{path}.maxSurge"))
    if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
        errs.append(invalid(f"{path}.maxUnavailable", unavailable, "may not be 0 when `maxSurge` is 0"))
    errs.extend(_not_more_than_100(unavailable, f"{path}.maxUnavailable"))
    return errs


def _common_counts(spec: JSON) -> list[FieldError]:
    errs = validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs.extend(validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    errs.extend(validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit"))
    return errs


def _selector_immutable(new: JSON, old: JSON | None) -> list[FieldError]:
    if old is None:
        return []
    return validate_immutable(dig(new, "spec", "selector"), dig(old, "spec", "selector"), "spec.selector")


def _wide_cells(spec: JSON, selector_text: str) -> list[str]:
    names, images = layout_containers(dig(spec, "template", "spec", "containers"))
    return [names, images, selector_text]


# --------------------------------------------------------------------------- Deployment


def default_deployment(deploy: JSON) -> None:
    spec = ensure(deploy, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = ensure(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = ensure(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(spec.get("template"))


def validate_deployment(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    errs = _common_counts(spec)
    errs.extend(_selector_errors(spec, "deployment"))
    errs.extend(validate_template_for_controller(spec, "ReplicaSet"))
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type")
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                forbidden(
                    "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            errs.append(required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            errs.extend(_rolling_update_errors(rolling, "spec.strategy.rollingUpdate"))
    else:
        errs.append(not_supported("spec.strategy", strategy, ("Recreate", "RollingUpdate")))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs.extend(validate_nonnegative(deadline, "spec.progressDeadlineSeconds"))
        if deadline <= (spec.get("minReadySeconds") or 0):
            errs.append(
                invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
            )
    errs.extend(_selector_immutable(new, old))
    return errs


DEPLOYMENT_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Ready", "string", "", "Number of the pod with ready state"),
    TableColumn(
        "Up-to-date",
        "string",
        "",
        "Total number of non-terminated pods targeted by this deployment that have the desired "
        "template spec.",
    ),
    TableColumn(
        "Available",
        "string",
        "",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    TableColumn(
        "Selector",
        "string",
        "",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the "
        "ones affected by this deployment.",
        1,
    ),
)


def deployment_row(deploy: JSON) -> list[Any]:
    spec = deploy.get("spec") or {}
    status = deploy.get("status") or {}
    return [
        name_of(deploy),
        f"{status.get('readyReplicas') or 0}/{spec.get('replicas') or 0}",
        status.get("updatedReplicas") or 0,
        status.get("availableReplicas") or 0,
        age_of(deploy),
        *_wide_cells(spec, selector_string(spec.get("selector"))),
    ]


# --------------------------------------------------------------------------- ReplicaSet


def default_replica_set(rs: JSON) -> None:
    spec = ensure(rs, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(spec.get("template"))


def validate_replica_set(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    errs = _common_counts(spec)
    errs.extend(_selector_errors(spec, "deployment"))  # sic: kube reuses the Deployment wording
    errs.extend(validate_template_for_controller(spec, "ReplicaSet"))
    errs.extend(_selector_immutable(new, old))
    return errs


REPLICA_SET_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Desired", "integer", "", "Replicas is the number of desired pods."),
    TableColumn("Current", "integer", "", "Replicas is the most recently observed number of replicas."),
    TableColumn(
        "Ready",
        "integer",
        "",
        "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    TableColumn(
        "Selector",
        "string",
        "",
        "Selector is a label query over pods that should match the replica count.",
        1,
    ),
)


def replica_set_row(rs: JSON) -> list[Any]:
    spec = rs.get("spec") or {}
    status = rs.get("status") or {}
    return [
        name_of(rs),
        spec.get("replicas") or 0,
        status.get("replicas") or 0,
        status.get("readyReplicas") or 0,
        age_of(rs),
        *_wide_cells(spec, format_label_selector(spec.get("selector"))),
    ]


# --------------------------------------------------------------------------- DaemonSet


def default_daemon_set(ds: JSON) -> None:
    spec = ensure(ds, "spec")
    strategy = ensure(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = ensure(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))


def _daemon_set_rolling_errors(rolling: JSON, path: str) -> list[FieldError]:
    """ValidateRollingUpdateDaemonSet: exactly one of maxUnavailable and maxSurge is non-zero."""
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = _int_or_percent_errors(unavailable, f"{path}.maxUnavailable")
    errs.extend(_int_or_percent_errors(surge, f"{path}.maxSurge"))
    errs.extend(_not_more_than_100(unavailable, f"{path}.maxUnavailable"))
    errs.extend(_not_more_than_100(surge, f"{path}.maxSurge"))
    has_unavailable = (_int_or_percent_value(unavailable) or 0) != 0
    has_surge = (_int_or_percent_value(surge) or 0) != 0
    if has_unavailable and has_surge:
        errs.append(invalid(f"{path}.maxSurge", surge, "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def validate_daemon_set(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    selector = spec.get("selector")
    errs = validate_label_selector(selector, "spec.selector")
    if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.append(invalid("spec.selector", selector, "empty selector is invalid for daemonset"))
    errs.extend(validate_template_for_controller(spec, "DaemonSet", skip_on_bad_selector=False))
    errs.extend(validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    strategy = spec.get("updateStrategy") or {}
    kind = strategy.get("type")
    if kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            errs.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            errs.extend(_daemon_set_rolling_errors(rolling, "spec.updateStrategy.rollingUpdate"))
    elif kind != "OnDelete":
        errs.append(not_supported("spec.updateStrategy", strategy, ("RollingUpdate", "OnDelete")))
    errs.extend(validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit"))
    errs.extend(_selector_immutable(new, old))
    return errs


DAEMON_SET_COLUMNS = (
    NAME_COLUMN,
    TableColumn(
        "Desired",
        "integer",
        "",
        "The total number of nodes that should be running the daemon pod (including nodes correctly "
        "running the daemon pod).",
    ),
    TableColumn(
        "Current",
        "integer",
        "",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    TableColumn(
        "Ready",
        "integer",
        "",
        "numberReady is the number of nodes that should be running the daemon pod and have one or "
        "more of the daemon pod running with a Ready Condition.",
    ),
    TableColumn("Up-to-date", "integer", "", "The total number of nodes that are running updated daemon pod"),
    TableColumn(
        "Available",
        "integer",
        "",
        "The number of nodes that should be running the daemon pod and have one or more of the "
        "daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    TableColumn(
        "Node Selector",
        "string",
        "",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    TableColumn("Selector", "string", "", "A label query over pods that are managed by the daemon set.", 1),
)


def daemon_set_row(ds: JSON) -> list[Any]:
    spec = ds.get("spec") or {}
    status = ds.get("status") or {}
    return [
        name_of(ds),
        status.get("desiredNumberScheduled") or 0,
        status.get("currentNumberScheduled") or 0,
        status.get("numberReady") or 0,
        status.get("updatedNumberScheduled") or 0,
        status.get("numberAvailable") or 0,
        format_labels(dig(spec, "template", "spec", "nodeSelector")),
        age_of(ds),
        *_wide_cells(spec, format_label_selector(spec.get("selector"))),
    ]


# --------------------------------------------------------------------------- StatefulSet

STATEFUL_SET_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def default_stateful_set(sts: JSON) -> None:
    spec = ensure(sts, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = ensure(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {"partition": 0})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    retention = ensure(spec, "persistentVolumeClaimRetentionPolicy")
    for key in ("whenDeleted", "whenScaled"):
        if not retention.get(key):
            retention[key] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))
    for claim in spec.get("volumeClaimTemplates") or []:
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        default_pvc(claim)


def validate_stateful_set(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    name = dig(new, "metadata", "name", default="")
    if old is None and name and not is_dns1123_subdomain(name):
        # StatefulSet names are DNS-1123 labels (pods are named NAME-ORDINAL); the API server
        # checks subdomains, so only the stricter part is added here
        errs.extend(invalid("metadata.name", name, m) for m in is_dns1123_label(name))
    spec = new.get("spec") or {}
    policy = spec.get("podManagementPolicy") or ""
    if not policy:
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    kind = strategy.get("type") or ""
    if not kind:
        errs.append(required("spec.updateStrategy"))
    elif kind == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                invalid(
                    "spec.updateStrategy.rollingUpdate",
                    strategy["rollingUpdate"],
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif kind == "RollingUpdate":
        partition = dig(strategy, "rollingUpdate", "partition")
        errs.extend(validate_nonnegative(partition, "spec.updateStrategy.rollingUpdate.partition"))
    else:
        errs.append(invalid("spec.updateStrategy", strategy, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        for key in ("whenDeleted", "whenScaled"):
            value = retention.get(key) or ""
            if value not in ("Retain", "Delete"):
                errs.append(
                    not_supported(
                        f"spec.persistentVolumeClaimRetentionPolicy.{key}", value, ("Retain", "Delete")
                    )
                )
    errs.extend(validate_nonnegative(spec.get("replicas"), "spec.replicas"))
    errs.extend(validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    errs.extend(validate_nonnegative(dig(spec, "ordinals", "start"), "spec.ordinals.start"))
    selector = spec.get("selector")
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        errs.extend(validate_label_selector(selector, "spec.selector"))
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errs.append(invalid("spec.selector", selector, "empty selector is invalid for statefulset"))
    if not selector_parses(selector):
        errs.append(invalid("spec.selector", selector, ""))
        template_errs = validate_template_for_controller(
            {**spec, "selector": {}}, "StatefulSet", skip_on_bad_selector=False, full_pod_spec=False
        )
        errs.extend(e for e in template_errs if e.field != "spec.template.metadata.labels")
    else:
        errs.extend(
            validate_template_for_controller(
                spec, "StatefulSet", skip_on_bad_selector=False, full_pod_spec=False
            )
        )
    if old is not None:
        old_spec = copy.deepcopy(old.get("spec") or {})
        munged = copy.deepcopy(spec)
        for key in STATEFUL_SET_MUTABLE:
            munged.pop(key, None)
            old_spec.pop(key, None)
        if munged != old_spec:
            errs.append(
                forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                    "are forbidden",
                )
            )
    return errs


STATEFUL_SET_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Ready", "string", "", "Number of the pod with ready state"),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
)


def stateful_set_row(sts: JSON) -> list[Any]:
    spec = sts.get("spec") or {}
    names, images = layout_containers(dig(spec, "template", "spec", "containers"))
    return [
        name_of(sts),
        f"{dig(sts, 'status', 'readyReplicas', default=0)}/{spec.get('replicas') or 0}",
        age_of(sts),
        names,
        images,
    ]


# --------------------------------------------------------------------------- ControllerRevision


def validate_controller_revision(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if new.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    errs.extend(validate_nonnegative(new.get("revision"), "revision"))
    if old is not None and new.get("data") != old.get("data"):
        errs.append(invalid("data", new.get("data"), FIELD_IMMUTABLE))
    return errs


CONTROLLER_REVISION_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Controller", "string", "", "Controller of the object"),
    TableColumn(
        "Revision", "string", "", "Revision indicates the revision of the state represented by Data."
    ),
    AGE_COLUMN,
)


def controller_revision_row(rev: JSON) -> list[Any]:
    controller = "<none>"
    for ref in dig(rev, "metadata", "ownerReferences", default=[]):
        if ref.get("controller"):
            api_version = ref.get("apiVersion") or ""
            group = api_version.split("/")[0] if "/" in api_version else ""
            kind = ref.get("kind") or ""
            group_kind = f"{kind}.{group}" if group else kind
            controller = (
                f"{group_kind.lower()}/{ref.get('name') or ''}" if group_kind else ref.get("name") or ""
            )
            break
    return [name_of(rev), controller, rev.get("revision") or 0, age_of(rev)]
