"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods that tolerate the
``node.kubernetes.io/unschedulable:NoSchedule`` taint."""

from __future__ import annotations

from kybern import hookimpl
from kybern.scheduling import CycleState, NodeInfo, PodInfo, Unresolvable, tolerates

SCHEDULER_PLUGIN_NAME = "NodeUnschedulable"
SCHEDULER_DEFAULT_ENABLED = True

REASON = Unresolvable("node(s) were unschedulable")
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    if state.unschedulable_nodes == 0:
        return {}
    bad = [n for n in nodes if n.unschedulable]
    if not bad or tolerates(pod.tolerations, _TAINT):
        return {}
    return {n.name: [REASON] for n in bad}
