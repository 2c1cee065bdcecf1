"""TaintToleration: NoSchedule/NoExecute taints keep pods off unless tolerated;
PreferNoSchedule taints lower a node's score."""

from __future__ import annotations

from kybern import hookimpl
from kybern.scheduling import MAX_NODE_SCORE, CycleState, NodeInfo, PodInfo, Unresolvable, tolerates

SCHEDULER_PLUGIN_NAME = "TaintToleration"
SCHEDULER_DEFAULT_ENABLED = True
SCHEDULER_DEFAULT_WEIGHT = 3


def untolerated(pod: PodInfo, node: NodeInfo) -> dict | None:
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod.tolerations, taint):
            return taint
    return None


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if state.tainted_nodes == 0:
        return out
    for node in nodes:
        if not node.taints:
            continue
        taint = untolerated(pod, node)
        if taint is not None:
            reason = f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
            out[node.name] = [Unresolvable(reason)]
    return out


@hookimpl
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float] | None:
    if state.tainted_nodes == 0:
        return None  # no taint anywhere: no opinion
    prefer = [t for t in pod.tolerations if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]
    scores: dict[str, float] = {}
    for node in nodes:
        if not node.taints:
            continue
        count = 0
        for taint in node.taints:
            if taint.get("effect") == "PreferNoSchedule" and not tolerates(prefer, taint):
                count += 1
        if count:
            scores[node.name] = count
    if not scores:
        return None  # the same for every node: no opinion
    for node in nodes:
        scores.setdefault(node.name, 0)
    return scores


@hookimpl
def kybern_sched_normalize_score(state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
    """Fewer intolerable PreferNoSchedule taints is better (kube's reverse normalisation)."""
    top = max(scores.values(), default=0)
    for name, value in scores.items():
        scores[name] = MAX_NODE_SCORE if top == 0 else MAX_NODE_SCORE - MAX_NODE_SCORE * value / top
