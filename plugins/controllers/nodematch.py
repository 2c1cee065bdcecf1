"""Would a pod fit a node by labels, affinity and taints (the part of scheduling that the
DaemonSet controller decides itself: kube's NodeShouldRunDaemonPod predicates)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def _requirement_matches(req: Obj, value: str | None) -> bool:
    op = req.get("operator")
    values = req.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    """A NodeSelectorTerm: every expression and field requirement holds (an empty term
    matches nothing, as in kube)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    for req in exprs:
        if not _requirement_matches(req, labels.get(req.get("key", ""))):
            return False
    for req in fields:
        if req.get("key") != "metadata.name":
            return False
        if not _requirement_matches(req, (node.get("metadata") or {}).get("name")):
            return False
    return True


def node_selector_matches(pod_spec: Obj, node: Obj) -> bool:
    """spec.nodeSelector and required node affinity (terms ORed)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(term_matches(t, node) for t in terms)


def tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    if (toleration.get("operator") or "Equal") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(tolerations: list[Obj], taints: list[Obj], effects: tuple[str, ...]) -> list[Obj]:
    return [
        t for t in taints if t.get("effect") in effects and not any(tolerates(tol, t) for tol in tolerations)
    ]
