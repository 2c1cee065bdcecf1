"""NodeAffinity: nodeSelector and required node affinity filter; preferred terms score."""

from __future__ import annotations

from kybern import hookimpl
from kybern.plugins.scheduler.defaults._nodeselection import pod_matches_node, required_terms, term_matches
from kybern.scheduling import MAX_NODE_SCORE, SKIP, CycleState, NodeInfo, PodInfo, Unresolvable

SCHEDULER_PLUGIN_NAME = "NodeAffinity"
SCHEDULER_DEFAULT_ENABLED = True
SCHEDULER_DEFAULT_WEIGHT = 2

REASON = Unresolvable("node(s) didn't match Pod's node affinity/selector")


@hookimpl
def kybern_sched_pre_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    if not pod.node_selector and required_terms(pod) is None:
        return SKIP
    return None


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    return {n.name: [REASON] for n in nodes if not pod_matches_node(pod, n)}


def _preferred(pod: PodInfo) -> list[dict]:
    na = pod.affinity.get("nodeAffinity") or {}
    return na.get("preferredDuringSchedulingIgnoredDuringExecution") or []


@hookimpl
def kybern_sched_pre_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    return None if _preferred(pod) else SKIP


@hookimpl
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float]:
    terms = _preferred(pod)
    scores: dict[str, float] = {}
    for node in nodes:
        total = 0
        for term in terms:
            weight = term.get("weight") or 0
            if weight and term_matches(term.get("preference") or {}, node):
                total += weight
        scores[node.name] = total
    return scores


@hookimpl
def kybern_sched_normalize_score(state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
    top = max(scores.values(), default=0)
    if top > 0:
        for name, value in scores.items():
            scores[name] = MAX_NODE_SCORE * value / top
