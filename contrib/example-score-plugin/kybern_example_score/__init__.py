"""PreferredNode: a Score plugin for kybern's scheduler.

Nodes labelled ``example.kybern.io/preferred=true`` score 100, every other node 0. With the
default weight of 5 that outweighs the spreading of NodeResourcesFit's LeastAllocated (weight
1), so pods land on preferred nodes while they have room; filters still decide what fits.
"""

from __future__ import annotations

from kybern import hookimpl
from kybern.scheduling import MAX_NODE_SCORE, CycleState, NodeInfo, PodInfo

#: the name profiles use in enabled/disabled lists and pluginConfig
SCHEDULER_PLUGIN_NAME = "PreferredNode"
#: join the default profile once installed (set False to make users enable it explicitly)
SCHEDULER_DEFAULT_ENABLED = True
SCHEDULER_DEFAULT_WEIGHT = 5

LABEL = "example.kybern.io/preferred"


@hookimpl
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float]:
    # pluginConfig args: {"label": "...", "value": "..."} choose another label
    args = state.plugin_args(SCHEDULER_PLUGIN_NAME)
    label = args.get("label", LABEL)
    value = args.get("value", "true")
    return {n.name: MAX_NODE_SCORE if n.labels.get(label) == value else 0 for n in nodes}
