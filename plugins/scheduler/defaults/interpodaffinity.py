"""InterPodAffinity: required and preferred pod affinity and anti-affinity by topologyKey,
and the anti-affinity of pods already running (symmetry).

Gaps: a non-empty ``namespaceSelector`` is treated as "all namespaces" (namespace labels are
not cached); preferred terms of existing pods do not score the incoming pod.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress
from operator import attrgetter
from typing import Any

from kybern import hookimpl
from kybern.labels import Selector, selector_from_dict
from kybern.scheduling import SKIP, CycleState, NodeInfo, PodInfo, Unresolvable

SCHEDULER_PLUGIN_NAME = "InterPodAffinity"
SCHEDULER_DEFAULT_ENABLED = True
SCHEDULER_DEFAULT_WEIGHT = 2

AFFINITY = Unresolvable("node(s) didn't match pod affinity rules")
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"


class Term:
    """A PodAffinityTerm, compiled against the namespace of the pod that owns it."""

    __slots__ = ("all_namespaces", "key", "namespaces", "selector")

    def __init__(self, raw: dict[str, Any], owner_namespace: str) -> None:
        self.key: str = raw.get("topologyKey") or ""
        self.selector: Selector = selector_from_dict(raw.get("labelSelector"))
        ns_selector = raw.get("namespaceSelector")
        self.all_namespaces = ns_selector is not None
        self.namespaces = set(raw.get("namespaces") or []) or (
            {owner_namespace} if ns_selector is None else set()
        )

    def matches(self, pod: PodInfo) -> bool:
        if not self.all_namespaces and pod.namespace not in self.namespaces:
            return False
        return self.selector.matches(pod.labels)


def _terms(pod: PodInfo, kind: str, when: str) -> list[Any]:
    return (pod.affinity.get(kind) or {}).get(when) or []


_ANTI_COUNT = attrgetter("anti_affinity_pods")
REQ = "requiredDuringSchedulingIgnoredDuringExecution"
PREF = "preferredDuringSchedulingIgnoredDuringExecution"


#: id of a pod's required anti-affinity list -> (the list, its compiled terms): every incoming
#: pod checks every existing pod's terms, so selectors are parsed once per pod, not per check
_compiled: dict[int, tuple[list[Any], list[Term]]] = {}
_MAX_COMPILED = 50_000


def _compiled_anti_terms(pod: PodInfo) -> list[Term]:
    raw = _terms(pod, "podAntiAffinity", REQ)
    if not raw:
        return []
    hit = _compiled.get(id(raw))
    if hit is not None and hit[0] is raw:
        return hit[1]
    if len(_compiled) >= _MAX_COMPILED:
        _compiled.clear()
    terms = [Term(t, pod.namespace) for t in raw]
    _compiled[id(raw)] = (raw, terms)
    return terms


def _domains(term: Term, all_nodes: list[NodeInfo]) -> dict[str, int]:
    """Matching pods per topology value of ``term.key``."""
    counts: dict[str, int] = {}
    for node in all_nodes:
        value = node.labels.get(term.key)
        if value is None:
            continue
        for other in node.pods.values():
            if term.matches(other):
                counts[value] = counts.get(value, 0) + 1
    return counts


@hookimpl
def kybern_sched_pre_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    affinity = [Term(t, pod.namespace) for t in _terms(pod, "podAffinity", REQ)]
    anti = [Term(t, pod.namespace) for t in _terms(pod, "podAntiAffinity", REQ)]
    existing: list[tuple[str, str]] = []  # (topologyKey, value) the pod must avoid
    # C-level scan: most clusters have no anti-affinity pods, and this runs for every pod;
    # none at all to look for when the scheduler's cache counts none
    if state.anti_affinity_pods == 0:
        marked: Iterable[NodeInfo] = ()
    else:
        marked = compress(state.all_nodes, map(_ANTI_COUNT, state.all_nodes))
    for node in marked:
        for other in node.pods.values():
            for term in _compiled_anti_terms(other):
                value = node.labels.get(term.key)
                if value is not None and term.matches(pod):
                    existing.append((term.key, value))
    if not affinity and not anti and not existing:
        return SKIP
    state.data[SCHEDULER_PLUGIN_NAME] = (
        [(t, _domains(t, state.all_nodes), t.matches(pod)) for t in affinity],
        [(t, _domains(t, state.all_nodes)) for t in anti],
        existing,
    )
    return None


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    affinity, anti, existing = state.data[SCHEDULER_PLUGIN_NAME]
    # the first pod of a group that matches its own affinity may go anywhere
    no_match_anywhere = all(not counts for _, counts, _ in affinity)
    self_match = all(own for _, _, own in affinity)
    out: dict[str, list[str]] = {}
    for node in nodes:
        labels = node.labels
        if any(labels.get(key) == value for key, value in existing):
            out[node.name] = [EXISTING_ANTI]
            continue
        bad_affinity = False
        for term, counts, _ in affinity:
            value = labels.get(term.key)
            if value is None or (not counts.get(value) and not (no_match_anywhere and self_match)):
                bad_affinity = True
                break
        if bad_affinity:
            out[node.name] = [AFFINITY]
            continue
        for term, counts in anti:
            value = labels.get(term.key)
            if value is not None and counts.get(value):
                out[node.name] = [ANTI_AFFINITY]
                break
    return out


@hookimpl
def kybern_sched_pre_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    weighted: list[tuple[int, Term]] = []
    for kind, sign in (("podAffinity", 1), ("podAntiAffinity", -1)):
        for raw in _terms(pod, kind, PREF):
            weight = int(raw.get("weight") or 0) * sign
            if weight:
                weighted.append((weight, Term(raw.get("podAffinityTerm") or {}, pod.namespace)))
    if not weighted:
        return SKIP
    state.data[SCHEDULER_PLUGIN_NAME + "/score"] = [(w, t, _domains(t, state.all_nodes)) for w, t in weighted]
    return None


@hookimpl
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float]:
    weighted = state.data[SCHEDULER_PLUGIN_NAME + "/score"]
    scores: dict[str, float] = {}
    for node in nodes:
        total = 0
        for weight, term, counts in weighted:
            value = node.labels.get(term.key)
            if value is not None:
                total += weight * counts.get(value, 0)
        scores[node.name] = total
    return scores


@hookimpl
def kybern_sched_normalize_score(state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
    if not scores:
        return
    top, low = max(scores.values()), min(scores.values())
    for name, value in scores.items():
        scores[name] = 0 if top == low else 100 * (value - low) / (top - low)
