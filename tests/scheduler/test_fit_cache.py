"""NodeResourcesFit keeps its per-node answers by node generation: whatever happens to the
nodes (pods added and removed, allocatable changed, clones, never-counted nodes), the cached
answers must be the ones computed afresh."""

from __future__ import annotations

import random

from kybern.plugins.scheduler.defaults import noderesourcesfit as fit
from kybern.scheduling import NodeInfo

from .helpers import node, pod, profile


def test_cached_filter_and_score_answers_match_fresh_ones() -> None:
    rng = random.Random(3)
    prof = profile()
    nodes = [node(f"n{i}", cpu="2", memory="4Gi", pods=6) for i in range(12)]
    sizes = [("100m", "128Mi"), ("500m", "1Gi"), ("1", "2Gi")]
    placed: list[tuple[NodeInfo, str]] = []
    strategy = fit.strategy_of({})
    checked = 0
    for step in range(400):
        action = rng.random()
        if action < 0.5:
            target = rng.choice(nodes)
            p = pod(cpu=rng.choice(sizes)[0], memory=rng.choice(sizes)[1])
            target.add_pod(p)
            placed.append((target, p.uid))
        elif action < 0.8 and placed:
            target, uid = placed.pop(rng.randrange(len(placed)))
            target.remove_pod(uid)
        elif action < 0.9:
            target = rng.choice(nodes)
            cpu = rng.choice(["1", "2", "3"])
            target.set_node(node(target.name, cpu=cpu, memory="4Gi", pods=6).obj)
        # some of the nodes asked about are clones, or never-counted nodes (all generation 0,
        # each with other room): none may take another's answer
        asked = [*rng.sample(nodes, 8), rng.choice(nodes).clone()]
        blank = rng.choice(nodes)
        asked.append(
            NodeInfo(
                obj=blank.obj,
                name=blank.name + "-blank",
                labels={},
                allocatable={"cpu": rng.choice([0, 100, 4000]), "memory": 1 << 30, "pods": 110},
                taints=[],
                unschedulable=False,
            )
        )
        incoming = pod(cpu=rng.choice(sizes)[0], memory=rng.choice(sizes)[1])
        state = prof.new_state(nodes, None)
        got = fit.kybern_sched_filter(state=state, pod=incoming, nodes=asked)
        want = {n.name: r for n in asked if (r := fit.insufficient(incoming, n))}
        assert got == want, step
        scores = fit.kybern_sched_score(state=state, pod=incoming, nodes=asked)
        assert scores == {n.name: fit.score_node(strategy, incoming, n) for n in asked}, step
        checked += len(want)
    assert checked  # some nodes did not fit: both kinds of answer were compared


def test_answers_are_dropped_when_they_outnumber_the_nodes() -> None:
    prof = profile()
    nodes = [node("only", cpu="4")]
    incoming = pod(cpu="3")
    for _ in range(3000):  # every change leaves an old generation behind
        p = pod(cpu="100m")
        nodes[0].add_pod(p)
        state = prof.new_state(nodes, None)
        fit.kybern_sched_filter(state=state, pod=incoming, nodes=nodes)
        nodes[0].remove_pod(p.uid)
    assert max(len(c) for c in fit._fit_cache.values()) <= 2 * len(nodes) + 1024 + 1
