"""PodTopologySpread: topologySpreadConstraints (maxSkew, topologyKey, whenUnsatisfiable,
labelSelector, minDomains). DoNotSchedule constraints filter, ScheduleAnyway ones score.

Domains are the topologyKey values of the nodes the pod could go to by nodeSelector and
required node affinity (nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore: kube's defaults);
matching pods are counted in the pod's namespace. Cluster-level default constraints
(kube's "system defaulting") are not applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kybern import hookimpl
from kybern.labels import Selector, selector_from_dict
from kybern.plugins.scheduler.defaults._nodeselection import pod_matches_node
from kybern.scheduling import MAX_NODE_SCORE, SKIP, CycleState, NodeInfo, PodInfo, Unresolvable

SCHEDULER_PLUGIN_NAME = "PodTopologySpread"
SCHEDULER_DEFAULT_ENABLED = True
SCHEDULER_DEFAULT_WEIGHT = 2

MISSING_LABEL = Unresolvable("node(s) didn't match pod topology spread constraints (missing required label)")
SKEW = "node(s) didn't match pod topology spread constraints"


@dataclass
class Constraint:
    key: str
    max_skew: int
    min_domains: int
    selector: Selector
    self_match: int
    counts: dict[str, int]


def _constraints(pod: PodInfo, when: str, all_nodes: list[NodeInfo]) -> list[Constraint]:
    out: list[Constraint] = []
    raw: list[dict[str, Any]] = [
        c for c in pod.topology_spread if (c.get("whenUnsatisfiable") or "DoNotSchedule") == when
    ]
    if not raw:
        return out
    eligible = [n for n in all_nodes if pod_matches_node(pod, n)]
    for c in raw:
        key = c.get("topologyKey") or ""
        selector = selector_from_dict(c.get("labelSelector"))
        counts: dict[str, int] = {}
        for node in eligible:
            domain = node.labels.get(key)
            if domain is None:
                continue
            n = 0
            for other in node.pods.values():
                if other.namespace == pod.namespace and selector.matches(other.labels):
                    n += 1
            counts[domain] = counts.get(domain, 0) + n
        out.append(
            Constraint(
                key=key,
                max_skew=int(c.get("maxSkew") or 1),
                min_domains=int(c.get("minDomains") or 1),
                selector=selector,
                self_match=1 if selector.matches(pod.labels) else 0,
                counts=counts,
            )
        )
    return out


@hookimpl
def kybern_sched_pre_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    constraints = _constraints(pod, "DoNotSchedule", state.all_nodes)
    if not constraints:
        return SKIP
    state.data[SCHEDULER_PLUGIN_NAME] = constraints
    return None


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    constraints: list[Constraint] = state.data[SCHEDULER_PLUGIN_NAME]
    out: dict[str, list[str]] = {}
    for node in nodes:
        for c in constraints:
            domain = node.labels.get(c.key)
            if domain is None:
                out[node.name] = [MISSING_LABEL]
                break
            minimum = min(c.counts.values(), default=0) if len(c.counts) >= c.min_domains else 0
            if c.counts.get(domain, 0) + c.self_match - minimum > c.max_skew:
                out[node.name] = [SKEW]
                break
    return out


@hookimpl
def kybern_sched_pre_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    constraints = _constraints(pod, "ScheduleAnyway", state.all_nodes)
    if not constraints:
        return SKIP
    state.data[SCHEDULER_PLUGIN_NAME + "/score"] = constraints
    return None


@hookimpl
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float]:
    constraints: list[Constraint] = state.data[SCHEDULER_PLUGIN_NAME + "/score"]
    scores: dict[str, float] = {}
    for node in nodes:
        total = 0.0
        for c in constraints:
            domain = node.labels.get(c.key)
            if domain is None:
                total = -1.0  # marks "cannot judge": lowest score after normalising
                break
            total += (c.counts.get(domain, 0) + c.self_match) * math.log(len(c.counts) + 2)
        scores[node.name] = total
    return scores


@hookimpl
def kybern_sched_normalize_score(state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
    """Fewer matching pods in the node's domains scores higher (kube's max+min-s over max)."""
    valid = [v for v in scores.values() if v >= 0]
    if not valid:
        return
    top, low = max(valid), min(valid)
    for name, value in scores.items():
        if value < 0:
            scores[name] = 0
        elif top == 0:
            scores[name] = MAX_NODE_SCORE
        else:
            scores[name] = MAX_NODE_SCORE * (top + low - value) / top
