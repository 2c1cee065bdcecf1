"""NodeResourcesFit: requests against allocatable (cpu, memory, ephemeral-storage, pod count,
extended resources), and the scoring strategies LeastAllocated (spread, default),
MostAllocated (bin packing) and RequestedToCapacityRatio (a utilisation -> score shape).

Args (pluginConfig NodeResourcesFitArgs): ``scoringStrategy.type``,
``scoringStrategy.resources`` ([{name, weight}], default cpu and memory weight 1),
``scoringStrategy.requestedToCapacityRatio.shape`` ([{utilization, score}], score 0..10),
``ignoredResources``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from kybern import hookimpl
from kybern.scheduling import CPU, MAX_NODE_SCORE, MEMORY, PODS, CycleState, NodeInfo, PodInfo

SCHEDULER_PLUGIN_NAME = "NodeResourcesFit"
SCHEDULER_DEFAULT_ENABLED = True
SCHEDULER_DEFAULT_WEIGHT = 1

STRATEGIES = ("LeastAllocated", "MostAllocated", "RequestedToCapacityRatio")
MAX_CUSTOM_SCORE = 10


@dataclass(frozen=True)
class Strategy:
    type: str
    resources: tuple[tuple[str, int], ...]
    shape: tuple[tuple[int, int], ...]
    ignored: frozenset[str]


_DEFAULT = Strategy("LeastAllocated", ((CPU, 1), (MEMORY, 1)), (), frozenset())
_parsed: dict[int, tuple[dict[str, Any], Strategy]] = {}


def validate_args(args: dict[str, Any]) -> list[str]:
    """Problems with NodeResourcesFitArgs, as one-line messages (for the config loader)."""
    problems: list[str] = []
    strategy = args.get("scoringStrategy") or {}
    if not isinstance(strategy, dict):
        return ["scoringStrategy must be a mapping"]
    kind = strategy.get("type", "LeastAllocated")
    if kind not in STRATEGIES:
        problems.append(
            f"scoringStrategy.type: Unsupported value: {kind!r}: supported values: {', '.join(STRATEGIES)}"
        )
    for i, res in enumerate(strategy.get("resources") or []):
        if not isinstance(res, dict) or not res.get("name"):
            problems.append(f"scoringStrategy.resources[{i}].name: Required value")
        elif not isinstance(res.get("weight", 1), int) or not 1 <= res.get("weight", 1) <= 100:
            problems.append(
                f"scoringStrategy.resources[{i}].weight: Invalid value: must be in the range [1, 100]"
            )
    if kind == "RequestedToCapacityRatio":
        shape = (strategy.get("requestedToCapacityRatio") or {}).get("shape") or []
        if not shape:
            problems.append("scoringStrategy.requestedToCapacityRatio.shape: Required value")
        last = -1
        for i, point in enumerate(shape):
            util, score = (point or {}).get("utilization"), (point or {}).get("score")
            if not isinstance(util, int) or not 0 <= util <= 100 or util <= last:
                problems.append(
                    f"scoringStrategy.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: "
                    "must be increasing integers in [0, 100]"
                )
            if not isinstance(score, int) or not 0 <= score <= MAX_CUSTOM_SCORE:
                problems.append(
                    f"scoringStrategy.requestedToCapacityRatio.shape[{i}].score: Invalid value: "
                    "must be an integer in [0, 10]"
                )
            if isinstance(util, int):
                last = util
    return problems


def strategy_of(args: dict[str, Any]) -> Strategy:
    if not args:
        return _DEFAULT
    cached = _parsed.get(id(args))
    if cached is not None and cached[0] is args:
        return cached[1]
    raw = args.get("scoringStrategy") or {}
    resources = (
        tuple((r["name"], int(r.get("weight", 1))) for r in raw.get("resources") or []) or _DEFAULT.resources
    )
    shape = tuple(
        (int(p["utilization"]), int(p["score"]))
        for p in (raw.get("requestedToCapacityRatio") or {}).get("shape") or []
    )
    strategy = Strategy(
        raw.get("type") or "LeastAllocated", resources, shape, frozenset(args.get("ignoredResources") or ())
    )
    _parsed[id(args)] = (args, strategy)
    return strategy


def insufficient(pod: PodInfo, node: NodeInfo, ignored: frozenset[str] = frozenset()) -> list[str]:
    """Why ``pod`` does not fit on ``node`` by resources ([] when it fits)."""
    reasons: list[str] = []
    requested = node.requested
    alloc = node.allocatable
    if requested.get(PODS, 0) + 1 > alloc.get(PODS, 110):
        reasons.append("Too many pods")
    for name, value in pod.requests.items():
        if value <= 0 or name in ignored:
            continue
        if requested.get(name, 0) + value > alloc.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


#: request signature -> node generation -> reasons ([] when it fits): bursts repeat the same
#: requests, and a node's answer changes only when the node does. A generation names one state
#: of one node (unique across nodes and clones), so it alone is the key: one int lookup per
#: node, a third cheaper than a name lookup and a generation compare. 0 (a node never
#: counted) is not cached.
_fit_cache: dict[tuple[frozenset[str], tuple[tuple[str, int], ...]], dict[int, list[str]]] = {}
_MAX_SIGNATURES = 256


def _answers(caches: dict[Any, dict[int, Any]], key: Any, state: CycleState) -> dict[int, Any]:
    """The signature's answers by generation; dropped once they outnumber the live nodes a
    few times over (every change of a node leaves its old generation behind)."""
    cache = caches.get(key)
    if cache is None:
        if len(caches) >= _MAX_SIGNATURES:
            caches.clear()
        cache = caches[key] = {}
    elif len(cache) > 2 * len(state.all_nodes) + 1024:
        cache.clear()
    return cache


@hookimpl
def kybern_sched_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, list[str]]:
    ignored = strategy_of(state.plugin_args(SCHEDULER_PLUGIN_NAME)).ignored
    reqs = tuple((k, v) for k, v in pod.requests.items() if v > 0 and k not in ignored)
    cache = _answers(_fit_cache, (ignored, reqs), state)
    known = cache.get
    out: dict[str, list[str]] = {}
    for node in nodes:
        reasons = known(node.generation)
        if reasons is None:
            requested = node.requested
            alloc = node.allocatable
            reasons = []
            if requested.get(PODS, 0) >= alloc.get(PODS, 110):
                reasons = insufficient(pod, node, ignored)
            else:
                for res, value in reqs:
                    if requested.get(res, 0) + value > alloc.get(res, 0):
                        reasons = insufficient(pod, node, ignored)
                        break
            if node.generation:
                cache[node.generation] = reasons
        if reasons:
            out[node.name] = reasons
    return out


def _shape_score(shape: tuple[tuple[int, int], ...], utilization: float) -> float:
    """Piecewise-linear shape through the points; flat beyond the ends (kube's broken-linear)."""
    if utilization <= shape[0][0]:
        return shape[0][1] * MAX_NODE_SCORE / MAX_CUSTOM_SCORE
    for (u0, s0), (u1, s1) in itertools.pairwise(shape):
        if utilization <= u1:
            score = s0 + (s1 - s0) * (utilization - u0) / (u1 - u0)
            return score * MAX_NODE_SCORE / MAX_CUSTOM_SCORE
    return shape[-1][1] * MAX_NODE_SCORE / MAX_CUSTOM_SCORE


def score_node(strategy: Strategy, pod: PodInfo, node: NodeInfo) -> float:
    total = 0.0
    weights = 0
    for name, weight in strategy.resources:
        capacity = node.allocatable.get(name, 0)
        if name in (CPU, MEMORY):
            requested = node.nonzero_requested.get(name, 0) + pod.nonzero(name)
        else:
            requested = node.requested.get(name, 0) + pod.requests.get(name, 0)
            if capacity == 0 and pod.requests.get(name, 0) == 0:
                continue  # extended resources count only for pods and nodes that have them
        if capacity <= 0:
            weights += weight
            continue
        if strategy.type == "MostAllocated":
            value = min(requested, capacity) * MAX_NODE_SCORE / capacity
        elif strategy.type == "RequestedToCapacityRatio":
            value = _shape_score(strategy.shape, min(requested * 100 / capacity, 100))
        else:
            value = max(capacity - requested, 0) * MAX_NODE_SCORE / capacity
        total += value * weight
        weights += weight
    return total / weights if weights else 0.0


#: (strategy, pod request signature) -> node generation -> score: a node's score for a given
#: request changes only when the node does, and bursts repeat the same requests
_score_cache: dict[tuple[Strategy, tuple[int, ...]], dict[int, float]] = {}


def _signature(strategy: Strategy, pod: PodInfo) -> tuple[int, ...]:
    requests = pod.requests
    return tuple(pod.nonzero(n) if n in (CPU, MEMORY) else requests.get(n, 0) for n, _ in strategy.resources)


@hookimpl
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float]:
    strategy = strategy_of(state.plugin_args(SCHEDULER_PLUGIN_NAME))
    cache = _answers(_score_cache, (strategy, _signature(strategy, pod)), state)
    known = cache.get
    scores: dict[str, float] = {}
    for node in nodes:
        value = known(node.generation)
        if value is None:
            value = score_node(strategy, pod, node)
            if node.generation:
                cache[node.generation] = value
        scores[node.name] = value
    return scores
