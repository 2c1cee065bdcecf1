"""Node selector matching shared by NodeAffinity and PodTopologySpread (which counts only
nodes the pod could go to)."""

from __future__ import annotations

from typing import Any

from kybern.scheduling import NodeInfo, PodInfo


def _int(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def requirement_matches(req: dict[str, Any], values_of: dict[str, str]) -> bool:
    """One NodeSelectorRequirement against labels (or fields): In, NotIn, Exists,
    DoesNotExist, Gt, Lt."""
    key = req.get("key") or ""
    op = req.get("operator") or ""
    values = req.get("values") or []
    present = key in values_of
    value = values_of.get(key)
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        have, want = _int(value or ""), _int(values[0] if values else "")
        if not present or have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: dict[str, Any], node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its expressions and fields hold (an empty term matches nothing)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node.labels
    if not all(requirement_matches(r, labels) for r in exprs):
        return False
    return all(requirement_matches(r, {"metadata.name": node.name}) for r in fields)


def required_terms(pod: PodInfo) -> list[dict[str, Any]] | None:
    na = pod.affinity.get("nodeAffinity") or {}
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return required.get("nodeSelectorTerms") or []


def pod_matches_node(pod: PodInfo, node: NodeInfo) -> bool:
    """nodeSelector and required node affinity (terms ORed), as NodeAffinity's filter."""
    if pod.node_selector:
        labels = node.labels
        for key, value in pod.node_selector.items():
            if labels.get(key) != value:
                return False
    terms = required_terms(pod)
    if terms is not None:
        return any(term_matches(t, node) for t in terms)
    return True
