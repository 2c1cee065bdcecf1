"""Namespace, Node and Event (core/v1): defaulting, validation, table rows, field selectors."""

from __future__ import annotations

from typing import Any

from kybern.plugins.resources.common import (
    AGE_COLUMN,
    JSON,
    NAME_COLUMN,
    age_of,
    dig,
    ensure,
    name_of,
    since,
)
from kybern.plugins.resources.pod_validation import TAINT_EFFECTS
from kybern.quantity import format_quantity
from kybern.resources import FieldError, TableColumn
from kybern.validation import (
    duplicate,
    forbidden,
    invalid,
    is_qualified_name,
    is_valid_label_value,
    not_supported,
    required,
)

# --------------------------------------------------------------------------- Namespace


def default_namespace(ns: JSON) -> None:
    """SetDefaults_Namespace (the metadata.name label), PrepareForCreate's finalizer, phase Active."""
    meta = ensure(ns, "metadata")
    if meta.get("name"):
        ensure(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    spec = ensure(ns, "spec")
    if spec.get("finalizers") is None:
        spec["finalizers"] = ["kubernetes"]
    status = ensure(ns, "status")
    if not status.get("phase"):
        status["phase"] = "Active"


def validate_namespace(new: JSON, old: JSON | None) -> list[FieldError]:
    # the name (a DNS-1123 label) is checked by the API server's validate_object_meta call
    errs: list[FieldError] = []
    for finalizer in dig(new, "spec", "finalizers", default=[]):
        if "/" not in finalizer and finalizer != "kubernetes":
            errs.append(
                invalid(
                    "spec.finalizers",
                    finalizer,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
        else:
            errs.extend(invalid("spec.finalizers", finalizer, m) for m in is_qualified_name(finalizer))
    phase = dig(new, "status", "phase")
    if phase and phase not in ("Active", "Terminating"):
        errs.append(not_supported("status.phase", phase, ("Active", "Terminating")))
    return errs


NAMESPACE_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Status", "string", "", "The status of the namespace"),
    AGE_COLUMN,
)


def namespace_row(ns: JSON) -> list[Any]:
    return [name_of(ns), dig(ns, "status", "phase", default=""), age_of(ns)]


# --------------------------------------------------------------------------- Node


def default_node(node: JSON) -> None:
    """SetDefaults_NodeStatus: allocatable defaults to capacity; quantities canonical."""
    status = node.get("status")
    if not isinstance(status, dict):
        return
    for key in ("capacity", "allocatable"):
        values = status.get(key)
        if isinstance(values, dict):
            for name, value in list(values.items()):
                try:
                    values[name] = format_quantity(value)
                except ValueError:
                    pass
    if status.get("capacity") and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])


def validate_node(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(dig(new, "spec", "taints", default=[])):
        p = f"spec.taints[{i}]"
        key = taint.get("key") or ""
        errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
        value = taint.get("value") or ""
        errs.extend(invalid(f"{p}.value", value, m) for m in is_valid_label_value(value))
        effect = taint.get("effect") or ""
        if not effect:
            errs.append(required(f"{p}.effect"))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", effect, TAINT_EFFECTS))
        if (key, effect) in seen:
            errs.append(duplicate(p, f"{key}:{effect}"))
        seen.add((key, effect))
    if old is not None:
        old_cidrs = dig(old, "spec", "podCIDRs", default=[])
        if old_cidrs and dig(new, "spec", "podCIDRs", default=[]) != old_cidrs:
            errs.append(
                forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid')
            )
        old_provider = dig(old, "spec", "providerID", default="")
        if old_provider and dig(new, "spec", "providerID", default="") != old_provider:
            errs.append(
                forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid')
            )
    return errs


NODE_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Status", "string", "", "The status of the node"),
    TableColumn("Roles", "string", "", "The roles of the node"),
    AGE_COLUMN,
    TableColumn("Version", "string", "", "Kubelet Version reported by the node."),
    TableColumn("Internal-IP", "string", "", "List of addresses reachable to the node.", 1),
    TableColumn("External-IP", "string", "", "List of addresses reachable to the node.", 1),
    TableColumn(
        "OS-Image",
        "string",
        "",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        1,
    ),
    TableColumn(
        "Kernel-Version",
        "string",
        "",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        1,
    ),
    TableColumn(
        "Container-Runtime",
        "string",
        "",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        1,
    ),
)


def node_status_text(node: JSON) -> str:
    statuses = []
    for condition in dig(node, "status", "conditions", default=[]):
        if condition.get("type") == "Ready":
            statuses = ["Ready" if condition.get("status") == "True" else "NotReady"]
    if not statuses:
        statuses = ["Unknown"]
    if dig(node, "spec", "unschedulable"):
        statuses.append("SchedulingDisabled")
    return ",".join(statuses)


def node_roles(node: JSON) -> str:
    roles: set[str] = set()
    for key, value in (dig(node, "metadata", "labels", default={})).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/") :]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _address(node: JSON, kind: str) -> str:
    for address in dig(node, "status", "addresses", default=[]):
        if address.get("type") == kind:
            return address.get("address") or ""
    return "<none>"


def node_row(node: JSON) -> list[Any]:
    info = dig(node, "status", "nodeInfo", default={})
    return [
        name_of(node),
        node_status_text(node),
        node_roles(node),
        age_of(node),
        info.get("kubeletVersion") or "",
        _address(node, "InternalIP"),
        _address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


# --------------------------------------------------------------------------- Event


def validate_event(new: JSON, old: JSON | None) -> list[FieldError]:
    """legacyValidateEvent for core/v1 requests: namespaces agree, new-style fields present."""
    errs: list[FieldError] = []
    namespace = dig(new, "metadata", "namespace", default="")
    involved_ns = dig(new, "involvedObject", "namespace", default="")
    if not new.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                errs.append(
                    invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
                )
        elif namespace != involved_ns:
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        controller = new.get("reportingComponent") or ""
        if not controller:
            errs.append(required("reportingComponent"))
        else:
            errs.extend(invalid("reportingComponent", controller, m) for m in is_qualified_name(controller))
        for key, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            value = new.get(key) or ""
            if not value:
                errs.append(required(key))
            elif len(value) > limit:
                errs.append(invalid(key, "", f"can have at most {limit} characters"))
        if len(new.get("message") or "") > 1024:
            errs.append(invalid("message", "", "can have at most 1024 characters"))
    return errs


EVENT_COLUMNS = (
    TableColumn(
        "Last Seen", "string", "", "The time at which the most recent occurrence of this event was recorded."
    ),
    TableColumn(
        "Type", "string", "", "Type of this event (Normal, Warning), new types could be added in the future"
    ),
    TableColumn(
        "Reason",
        "string",
        "",
        "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status.",
    ),
    TableColumn("Object", "string", "", "The object that this event is about."),
    TableColumn(
        "Subobject",
        "string",
        "",
        "If referring to a piece of an object instead of an entire object, this string should "
        "contain a valid JSON/Go field access statement.",
        1,
    ),
    TableColumn(
        "Source",
        "string",
        "",
        "The component reporting this event. Should be a short machine understandable string.",
        1,
    ),
    TableColumn("Message", "string", "", "A human-readable description of the status of this operation."),
    TableColumn(
        "First Seen",
        "string",
        "",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        1,
    ),
    TableColumn("Count", "string", "", "The number of times this event has occurred.", 1),
    TableColumn("Name", "string", "name", NAME_COLUMN.description, 1),
)


def event_row(event: JSON) -> list[Any]:
    first = (
        since(event.get("firstTimestamp")) if event.get("firstTimestamp") else since(event.get("eventTime"))
    )
    last = since(event.get("lastTimestamp")) if event.get("lastTimestamp") else first
    count = event.get("count") or 0
    series = event.get("series")
    if series:
        last = since(series.get("lastObservedTime"))
        count = series.get("count") or 0
    elif count == 0:
        count = 1
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return [
        last,
        event.get("type") or "",
        event.get("reason") or "",
        target,
        involved.get("fieldPath") or "",
        f"{component}, {instance}" if instance else component,
        (event.get("message") or "").strip(),
        first,
        count,
        name_of(event),
    ]


EVENT_FIELD_SELECTORS = {
    "involvedObject.kind": lambda e: dig(e, "involvedObject", "kind", default=""),
    "involvedObject.namespace": lambda e: dig(e, "involvedObject", "namespace", default=""),
    "involvedObject.name": lambda e: dig(e, "involvedObject", "name", default=""),
    "involvedObject.uid": lambda e: dig(e, "involvedObject", "uid", default=""),
    "involvedObject.apiVersion": lambda e: dig(e, "involvedObject", "apiVersion", default=""),
    "involvedObject.resourceVersion": lambda e: dig(e, "involvedObject", "resourceVersion", default=""),
    "involvedObject.fieldPath": lambda e: dig(e, "involvedObject", "fieldPath", default=""),
    "reason": lambda e: dig(e, "reason", default=""),
    "reportingComponent": lambda e: dig(e, "reportingComponent", default=""),
    "source": lambda e: dig(e, "source", "component", default=""),
    "type": lambda e: dig(e, "type", default=""),
}
