"""One profile's plugins, resolved to functions, and the synchronous half of a scheduling
cycle: PreFilter, Filter (over a rotating share of the nodes), PreScore, Score, Normalize,
weighted sum, pick.

Hook implementations are taken from pluggy (``hook.get_hookimpls()``) and called directly,
per enabled plugin and in the profile's order: pluggy's own call would run every plugin,
enabled or not, and merge their answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from kybern.plugins.scheduler.config import COMPANION_HOOKS, EXTENSION_POINTS, ProfileConfig, SchedulerPlugin
from kybern.scheduling import SKIP, CycleState, NodeInfo, PodInfo

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
#: fewest nodes filtered per batch while looking for enough feasible ones
MIN_CHUNK = 16

Fn = Callable[..., Any]


def nodes_to_find(total: int, percentage: int | None) -> int:
    """kube-scheduler's numFeasibleNodesToFind: all nodes up to 100, then an adaptive share
    (50% minus 1% per 125 nodes, at least 5%) unless the configuration sets one."""
    if total < MIN_FEASIBLE_NODES_TO_FIND or percentage == 100:
        return total
    if not percentage:
        percentage = max(50 - total // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass
class FitError:
    """Why a pod fits nowhere: per-node reasons, or one reason from PreFilter."""

    total_nodes: int
    reasons: dict[str, list[str]] = field(default_factory=dict)
    pre_filter_message: str = ""
    post_filter_message: str = ""

    def message(self) -> str:
        """kube-scheduler's FitError text: "0/3 nodes are available: 2 Insufficient cpu, ...".

        Reason counts are sorted as strings, as kube's sortReasonsHistogram does."""
        if self.total_nodes == 0:
            return "no nodes available to schedule pods"
        text = f"0/{self.total_nodes} nodes are available:"
        if self.pre_filter_message:
            text += f" {self.pre_filter_message}."
        else:
            histogram: dict[str, int] = {}
            for reasons in self.reasons.values():
                for reason in reasons:
                    histogram[reason] = histogram.get(reason, 0) + 1
            parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
            if parts:
                text += " " + ", ".join(parts) + "."
        if self.post_filter_message:
            text += f" preemption: {self.post_filter_message}."
        return text


def with_nominated(node: NodeInfo, pod: PodInfo, waiting: list[PodInfo] | None) -> NodeInfo:
    """``node`` with the nominated pods that outrank (or equal) ``pod`` counted on it."""
    if not waiting:
        return node
    ahead = [w for w in waiting if w.uid != pod.uid and w.priority >= pod.priority]
    if not ahead:
        return node
    clone = node.clone()
    for w in ahead:
        clone.add_pod(w)
    return clone


def _ring_slice(nodes: list[NodeInfo], lo: int, hi: int) -> list[NodeInfo]:
    """``nodes[lo:hi]`` with indices past the end wrapping around (0 <= lo <= hi < 2 * len),
    as list slices: the rotating start of kube's node search without a Python loop per node."""
    total = len(nodes)
    if hi <= total:
        return nodes[lo:hi]
    if lo >= total:
        return nodes[lo - total : hi - total]
    return nodes[lo:] + nodes[: hi - total]


class Profile:
    """A profile's enabled plugin functions per extension point, in order."""

    def __init__(
        self, config: ProfileConfig, pm: pluggy.PluginManager, available: dict[str, SchedulerPlugin]
    ) -> None:
        self.config = config
        self.name = config.scheduler_name
        self.args = config.args
        by_registration = {p.registered_as: p.name for p in available.values()}
        impls: dict[str, dict[str, Fn]] = {}
        for hook in (*EXTENSION_POINTS.values(), *COMPANION_HOOKS):
            caller = getattr(pm.hook, hook)
            impls[hook] = {
                by_registration[i.plugin_name]: i.function
                for i in caller.get_hookimpls()
                if i.plugin_name in by_registration
            }
        self.points: dict[str, list[tuple[str, Fn]]] = {}
        for point, hook in EXTENSION_POINTS.items():
            self.points[point] = [
                (n, impls[hook][n]) for n in config.enabled.get(point, []) if n in impls[hook]
            ]
        self.normalize = impls["kybern_sched_normalize_score"]
        self.unreserve_fns = [
            (n, impls["kybern_sched_unreserve"][n])
            for n in config.enabled.get("reserve", [])
            if n in impls["kybern_sched_unreserve"]
        ]
        self.weights = {n: config.weights.get(n, 1) for n, _ in self.points["score"]}
        self._next_start = 0

    # --- helpers the plugins get through CycleState -------------------------------------------

    def new_state(self, all_nodes: list[NodeInfo], client: Any) -> CycleState:
        state = CycleState(profile=self.name, all_nodes=all_nodes, args=self.args, client=client)
        state.run_filters = self.run_filters
        return state

    def run_filters(
        self, pod: PodInfo, nodes: list[NodeInfo], all_nodes: list[NodeInfo]
    ) -> dict[str, list[str]]:
        """PreFilter and Filter of this profile on the given nodes, in a fresh cycle state."""
        state = self.new_state(all_nodes, None)
        skipped: set[str] = set()
        for name, fn in self.points["preFilter"]:
            result = fn(state=state, pod=pod, nodes=all_nodes)
            if result == SKIP:
                skipped.add(name)
            elif result:
                return {n.name: [result] for n in nodes}
        return self._filter(state, pod, nodes, skipped)

    def _filter(
        self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], skipped: set[str]
    ) -> dict[str, list[str]]:
        failed: dict[str, list[str]] = {}
        remaining = nodes
        for name, fn in self.points["filter"]:
            if name in skipped or not remaining:
                continue
            out = fn(state=state, pod=pod, nodes=remaining)
            if out:
                failed.update(out)
                remaining = [n for n in remaining if n.name not in out]
        return failed

    # --- the cycle ----------------------------------------------------------------------------

    def sort_key(self, pod: PodInfo) -> Any:
        for _, fn in self.points["queueSort"]:
            return fn(pod=pod)
        return (pod.creation,)

    def schedule(
        self,
        state: CycleState,
        pod: PodInfo,
        nodes: list[NodeInfo],
        percentage: int | None,
        nominated: dict[str, list[PodInfo]] | None = None,
    ) -> str | FitError:
        """Pick a node for ``pod`` among ``nodes`` (the cache's current view).

        ``nominated`` holds pods that preempted others and wait for their victims to go: on
        those nodes the pod is filtered as if the nominated pods of at least its priority
        were already there, so the room preemption made is not taken by someone else."""
        total = len(nodes)
        if total == 0:
            return FitError(0)
        skipped: set[str] = set()
        for name, fn in self.points["preFilter"]:
            result = fn(state=state, pod=pod, nodes=nodes)
            if result == SKIP:
                skipped.add(name)
            elif result:
                return FitError(total, pre_filter_message=result)
        want = nodes_to_find(total, self.config.percentage_of_nodes_to_score or percentage)
        feasible: list[NodeInfo] = []
        failed: dict[str, list[str]] = {}
        start = self._next_start % total
        processed = 0
        while processed < total and len(feasible) < want:
            # ask for what is still missing (plus a little): one pass when most nodes fit
            end = min(processed + max(want - len(feasible) + MIN_CHUNK, MIN_CHUNK), total)
            chunk = _ring_slice(nodes, start + processed, start + end)
            processed = end
            if nominated:
                chunk = [with_nominated(n, pod, nominated.get(n.name)) for n in chunk]
            out = self._filter(state, pod, chunk, skipped)
            if out:
                failed.update(out)
                feasible.extend(n for n in chunk if n.name not in out)
            else:
                feasible.extend(chunk)
        if len(feasible) > want:
            processed -= len(feasible) - want
            feasible = feasible[:want]
        self._next_start = (start + processed) % total
        if not feasible:
            return FitError(total, reasons=failed)
        if len(feasible) == 1:
            return feasible[0].name
        return self._pick(self._score(state, pod, feasible))

    def _score(self, state: CycleState, pod: PodInfo, feasible: list[NodeInfo]) -> dict[str, float]:
        skipped: set[str] = set()
        for name, fn in self.points["preScore"]:
            if fn(state=state, pod=pod, nodes=feasible) == SKIP:
                skipped.add(name)
        answers: list[tuple[dict[str, float], int]] = []
        for name, fn in self.points["score"]:
            if name in skipped:
                continue
            scores = fn(state=state, pod=pod, nodes=feasible)
            if not scores:
                continue
            normalize = self.normalize.get(name)
            if normalize is not None:
                normalize(state=state, pod=pod, scores=scores)
            answers.append((scores, self.weights.get(name, 1)))
        if len(answers) == 1 and len(answers[0][0]) == len(feasible):
            # one plugin had an opinion (the default profile on untainted nodes): its scores,
            # scaled by its weight, are the totals; no per-node sum in Python
            scores, weight = answers[0]
            return scores if weight == 1 else {n: v * weight for n, v in scores.items()}
        totals = dict.fromkeys([n.name for n in feasible], 0.0)
        for scores, weight in answers:
            for node_name, value in scores.items():
                if node_name in totals:
                    totals[node_name] += value * weight
        return totals

    @staticmethod
    def _pick(totals: dict[str, float]) -> str:
        """Highest total; ties broken at random (kube's reservoir sampling)."""
        floor = max(totals.values()) - 1e-9
        winners = [n for n, v in totals.items() if v >= floor]
        return winners[0] if len(winners) == 1 else random.choice(winners)
