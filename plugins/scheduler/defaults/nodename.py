"""NodeName: a pod that names its node runs only there."""

from __future__ import annotations

from kybern import hookimpl
from kybern.scheduling import SKIP, CycleState, NodeInfo, PodInfo, Unresolvable

SCHEDULER_PLUGIN_NAME = "NodeName"
SCHEDULER_DEFAULT_ENABLED = True

REASON = Unresolvable("node(s) didn't match the requested node name")


@hookimpl
def kybern_sched_pre_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    return None if pod.node_name else SKIP


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    return {n.name: [REASON] for n in nodes if n.name != pod.node_name}
