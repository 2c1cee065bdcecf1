"""DefaultPreemption: when no node fits, a pod may evict lower-priority pods from one node.

For every node that failed only for reasons evictions could fix, all lower-priority pods are
removed in a dry run; if the pod then fits, victims are given back highest priority first
while it still fits. The node whose victims have the lowest top priority (then the lowest
sum, then the fewest) wins: its victims are deleted (as kube-scheduler does, with no
PodDisruptionBudget check) and the pod's ``status.nominatedNodeName`` set; the pod is retried
when the deletions arrive. Pods with ``preemptionPolicy: Never`` never preempt.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from kybern import hookimpl
from kybern.client import ApiError
from kybern.scheduling import CycleState, NodeInfo, PodInfo, PostFilterResult, Unresolvable
from loguru import logger

SCHEDULER_PLUGIN_NAME = "DefaultPreemption"
SCHEDULER_DEFAULT_ENABLED = True

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"

log = logger.bind(component="scheduler")


def _fits(state: CycleState, pod: PodInfo, clone: NodeInfo) -> bool:
    all_nodes = [clone if n.name == clone.name else n for n in state.all_nodes]
    return not state.run_filters(pod, [clone], all_nodes)


def victims_on(state: CycleState, pod: PodInfo, node: NodeInfo) -> list[PodInfo] | None:
    """The fewest lower-priority pods whose removal lets ``pod`` fit (None: none does)."""
    lower = [p for p in node.pods.values() if p.priority < pod.priority]
    if not lower:
        return None
    clone = node.clone()
    for victim in lower:
        clone.remove_pod(victim.uid)
    if not _fits(state, pod, clone):
        return None
    victims: list[PodInfo] = []
    for candidate in sorted(lower, key=lambda p: (-p.priority, p.creation)):
        clone.add_pod(candidate)
        if not _fits(state, pod, clone):
            clone.remove_pod(candidate.uid)
            victims.append(candidate)
    return victims


def select(
    state: CycleState, pod: PodInfo, reasons: dict[str, list[str]]
) -> tuple[str | None, list[PodInfo], str]:
    """(node, victims, message) where message is kube's "0/N nodes are available: ..." text."""
    histogram: dict[str, int] = {}
    best: tuple[tuple[int, int, int], str, list[PodInfo]] | None = None
    by_name = {n.name: n for n in state.all_nodes}
    for name, why in reasons.items():
        node = by_name.get(name)
        if node is None or any(isinstance(r, Unresolvable) for r in why):
            histogram[NOT_HELPFUL] = histogram.get(NOT_HELPFUL, 0) + 1
            continue
        victims = victims_on(state, pod, node)
        if victims is None:
            histogram[NO_VICTIMS] = histogram.get(NO_VICTIMS, 0) + 1
            continue
        rank = (
            max((v.priority for v in victims), default=-(2**31)),
            sum(v.priority for v in victims),
            len(victims),
        )
        if best is None or rank < best[0]:
            best = (rank, name, victims)
    total = len(state.all_nodes)
    if best is not None:
        return best[1], best[2], ""
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    return None, [], f"0/{total} nodes are available: {', '.join(parts)}"


async def _preempt(state: CycleState, pod: PodInfo, node: str, victims: list[PodInfo]) -> PostFilterResult:
    client = state.client
    for victim in victims:
        log.info("preempting {} on {} for {}", victim.key, node, pod.key)
        try:
            await client.delete(
                "pods", victim.name, namespace=victim.namespace, preconditions={"uid": victim.uid}
            )
        except ApiError as exc:
            if not exc.not_found and exc.code != 409:
                log.warning("preemption of {} failed: {}", victim.key, exc)
    try:
        await client.patch(
            "pods",
            pod.name,
            {"status": {"nominatedNodeName": node}},
            patch_type="merge",
            namespace=pod.namespace,
            subresource="status",
        )
    except ApiError as exc:
        log.warning("cannot nominate {} for {}: {}", node, pod.key, exc)
    return PostFilterResult(node, "")


@hookimpl
def kybern_sched_post_filter(
    state: CycleState, pod: PodInfo, reasons: dict[str, list[str]]
) -> PostFilterResult | Awaitable[PostFilterResult] | None:
    spec: dict[str, Any] = pod.spec
    if spec.get("preemptionPolicy") == "Never":
        return PostFilterResult(None, "not eligible due to preemptionPolicy=Never")
    node, victims, message = select(state, pod, reasons)
    if node is None:
        return PostFilterResult(None, message)
    return _preempt(state, pod, node, victims)
