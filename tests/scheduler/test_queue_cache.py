"""The scheduling queue (back-off, unschedulable pods moved by events) and the cache
(assume, confirm, forget)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kybern.plugins.scheduler import queue as queue_mod
from kybern.plugins.scheduler.cache import SchedulerCache
from kybern.plugins.scheduler.queue import SchedulingQueue

from .helpers import node, pod


def key(p) -> tuple:
    return (-p.priority, p.creation)


def test_active_queue_pops_by_priority() -> None:
    async def main() -> list[str]:
        q = SchedulingQueue(key)
        for name, prio in (("low", 1), ("high", 100), ("mid", 50)):
            q.add(pod(name, priority=prio))
        return [(await q.pop()).pod.name for _ in range(3)]

    assert asyncio.run(main()) == ["high", "mid", "low"]


def test_unschedulable_pods_wait_for_an_event_then_back_off(monkeypatch) -> None:
    monkeypatch.setattr(queue_mod, "INITIAL_BACKOFF", 0.05)

    async def main() -> None:
        q = SchedulingQueue(key)
        q.add(pod("p"))
        queued = await q.pop()
        q.requeue_unschedulable(queued)
        assert q.counts()["unschedulable"] == 1
        # nothing happens without an event
        waiter = asyncio.create_task(q.pop())
        await asyncio.sleep(0.15)
        assert not waiter.done()
        assert q.move_all() == 1
        again = await asyncio.wait_for(waiter, 1)
        assert again is queued and again.attempts == 1

    asyncio.run(main())


def test_event_during_an_attempt_sends_the_pod_to_back_off(monkeypatch) -> None:
    monkeypatch.setattr(queue_mod, "INITIAL_BACKOFF", 0.05)

    async def main() -> None:
        q = SchedulingQueue(key)
        q.add(pod("p"))
        queued = await q.pop()
        q.move_all()  # a node was added while the pod was being scheduled
        q.requeue_unschedulable(queued)
        assert q.counts()["backoff"] == 1
        assert await asyncio.wait_for(q.pop(), 1) is queued

    asyncio.run(main())


def test_backoff_doubles_up_to_the_cap() -> None:
    q = SchedulingQueue(key)

    async def main() -> list[float]:
        q.add(pod("p"))
        queued = await q.pop()
        delays = []
        for attempts in (1, 2, 3, 4, 5, 6):
            queued.attempts = attempts
            queued.failed_at = 100.0
            delays.append(queued.backoff_until() - 100.0)
        return delays

    assert asyncio.run(main()) == [1, 2, 4, 8, 10, 10]


def test_removed_pods_are_not_popped() -> None:
    async def main() -> str:
        q = SchedulingQueue(key)
        gone, kept = pod("gone"), pod("kept")
        q.add(gone)
        q.add(kept)
        q.remove(gone.uid)
        return (await q.pop()).pod.name

    assert asyncio.run(main()) == "kept"


def test_cache_assume_confirm_and_forget() -> None:
    cache = SchedulerCache()
    cache.set_node(node("a", cpu="1").obj)
    p = pod("p", cpu="600m")
    cache.assume(p, "a")
    assert cache.nodes["a"].requested["cpu"] == 600
    cache.forget(p.uid)
    assert cache.nodes["a"].requested["cpu"] == 0
    cache.assume(p, "a")
    bound = pod("p", cpu="600m", node_name="a")
    bound.uid = p.uid
    cache.set_assigned_pod(bound)  # the watch confirms: counted once
    assert cache.nodes["a"].requested["cpu"] == 600 and not cache.assumed
    cache.forget(p.uid)  # no longer assumed: stays
    assert cache.nodes["a"].requested["cpu"] == 600
    cache.remove_pod(p.uid)
    assert cache.nodes["a"].requested == {"cpu": 0, "pods": 0}


def test_pods_on_unknown_nodes_count_once_the_node_appears() -> None:
    cache = SchedulerCache()
    cache.set_assigned_pod(pod("early", cpu="1", node_name="late"))
    cache.set_node(node("late").obj)
    assert cache.nodes["late"].requested["cpu"] == 1000
    done = pod("done", cpu="1", node_name="late")
    done.obj["status"] = {"phase": "Succeeded"}
    cache.set_assigned_pod(done)
    assert cache.nodes["late"].requested["cpu"] == 1000


def test_a_bound_pods_status_update_keeps_the_nodes_generation() -> None:
    """A kubelet's status write replaces the cached copy; a change scheduling reads does not."""
    import copy

    cache = SchedulerCache()
    cache.set_node(node("a", cpu="2").obj)
    bound = pod("p", cpu="500m", labels={"app": "web"}, node_name="a")
    cache.set_assigned_pod(bound)
    generation = cache.nodes["a"].generation
    running = copy.deepcopy(bound.obj)
    running["status"] = {"phase": "Running", "podIP": "10.0.0.5"}
    assert cache.refresh_assigned(bound.uid, running)
    assert cache.nodes["a"].generation == generation
    assert cache.nodes["a"].pods[bound.uid].obj is running
    assert cache.nodes["a"].requested["cpu"] == 500
    relabelled = copy.deepcopy(running)
    relabelled["metadata"]["labels"] = {"app": "db"}
    finished = copy.deepcopy(running)
    finished["status"]["phase"] = "Succeeded"
    deleting = copy.deepcopy(running)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-27T00:00:00Z"
    for changed in (relabelled, finished, deleting):
        assert not cache.refresh_assigned(bound.uid, changed)
    assumed = pod("q", cpu="100m")
    cache.assume(assumed, "a")  # not confirmed by a watch yet: the full path confirms it
    confirmed = copy.deepcopy(assumed.obj)
    confirmed["spec"]["nodeName"] = "a"
    assert not cache.refresh_assigned(assumed.uid, confirmed)
    assert not cache.refresh_assigned("unknown-uid", running)


def _anti_affinity_pod(name: str, node_name: str = "") -> object:
    term = {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
    return pod(
        name,
        cpu="100m",
        labels={"app": "web"},
        node_name=node_name,
        affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
    )


def test_the_caches_anti_affinity_count_follows_every_change() -> None:
    """The count lets the cycle skip InterPodAffinity's scan of every node: it must equal the
    nodes' own counts after assume, confirm, move, forget, removal and node deletion."""
    cache = SchedulerCache()

    def consistent() -> int:
        assert cache.anti_affinity_pods == sum(n.anti_affinity_pods for n in cache.nodes.values())
        return cache.anti_affinity_pods

    cache.set_node(node("a").obj)
    cache.set_node(node("b").obj)
    first = _anti_affinity_pod("first")
    cache.assume(first, "a")
    assert consistent() == 1
    bound = _anti_affinity_pod("first", node_name="a")
    bound.uid = first.uid
    cache.set_assigned_pod(bound)  # confirmed: still one
    assert consistent() == 1
    moved = _anti_affinity_pod("first", node_name="b")
    moved.uid = first.uid
    cache.set_assigned_pod(moved)
    assert consistent() == 1 and cache.nodes["b"].anti_affinity_pods == 1
    plain = pod("plain", cpu="100m", node_name="b")
    plain.uid = first.uid  # the same pod without its anti-affinity (a recreated pod, say)
    cache.set_assigned_pod(plain)
    assert consistent() == 0
    second = _anti_affinity_pod("second")
    cache.assume(second, "a")
    cache.forget(second.uid)
    assert consistent() == 0
    cache.set_assigned_pod(_anti_affinity_pod("third", node_name="late"))  # node not known yet
    assert consistent() == 0
    cache.set_node(node("late").obj)
    assert consistent() == 1
    cache.remove_node("late")
    assert consistent() == 0
    fourth = _anti_affinity_pod("fourth", node_name="a")
    cache.set_assigned_pod(fourth)
    assert consistent() == 1
    cache.remove_pod(fourth.uid)
    assert consistent() == 0


def _placed_without_and_with_counts(
    seed: int, count: int, make_pod: Any, counts: tuple[str, ...], changes: dict[int, Any] | None = None
) -> list[list[str]]:
    """Where ``count`` pods land on nodes a, b and c (or why not), scheduled twice from the same
    start: first with plugins looking at every node, then told the cache's ``counts`` (the
    CycleState attributes named as the cache's). ``changes``: node updates before pod i."""
    import random

    from .helpers import profile

    prof = profile()
    runs = []
    for hint in (False, True):
        random.seed(seed)
        cache = SchedulerCache()
        for name in ("a", "b", "c"):
            cache.set_node(node(name, cpu="2").obj)
        placed = []
        for i in range(count):
            if changes and i in changes:
                cache.set_node(changes[i].obj)
            p = make_pod(i)
            nodes = cache.node_list()
            state = prof.new_state(nodes, None)
            if hint:
                for attr in counts:
                    setattr(state, attr, getattr(cache, attr))
            result = prof.schedule(state, p, nodes, None)
            placed.append(result if isinstance(result, str) else result.message())
            if isinstance(result, str):
                cache.assume(p, result)
        runs.append(placed)
    return runs


def test_scheduling_with_the_caches_count_matches_the_full_scan() -> None:
    """A cycle told the cache's anti-affinity count places pods exactly as one that scans."""

    def make_pod(i: int) -> Any:
        # existing anti-affinity pods keep later "web" pods off their nodes (symmetry)
        return _anti_affinity_pod(f"w{i}") if i % 2 else pod(f"p{i}", cpu="100m", labels={"app": "web"})

    runs = _placed_without_and_with_counts(5, 6, make_pod, ("anti_affinity_pods",))
    assert runs[0] == runs[1]
    assert any("anti-affinity" in r for r in runs[1])  # the existing pods' terms did count


def test_the_caches_node_counts_follow_taints_and_cordons() -> None:
    cache = SchedulerCache()

    def counts() -> tuple[int, int]:
        nodes = cache.nodes.values()
        tainted, cordoned = sum(bool(n.taints) for n in nodes), sum(n.unschedulable for n in nodes)
        assert (cache.tainted_nodes, cache.unschedulable_nodes) == (tainted, cordoned)
        return tainted, cordoned

    cache.set_node(node("a").obj)
    assert counts() == (0, 0)
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    cache.set_node(node("b", taints=[taint]).obj)
    assert counts() == (1, 0)
    cache.set_node(node("a", unschedulable=True).obj)  # cordoned
    assert counts() == (1, 1)
    cache.set_node(node("b").obj)  # the taint went
    assert counts() == (0, 1)
    cache.set_node(node("b", taints=[taint], unschedulable=True).obj)
    assert counts() == (1, 2)
    cache.remove_node("b")
    assert counts() == (0, 1)
    cache.set_node(node("a").obj)  # uncordoned
    assert counts() == (0, 0)
    cache.set_node(node("a", taints=[taint]).obj)
    assert counts() == (1, 0)
    bad = node("a").obj
    bad["status"]["allocatable"]["cpu"] = "lots"
    with pytest.raises(ValueError):
        cache.set_node(bad)  # the watch handler fails on it half way; the counts stay true
    assert counts() == (1, 0)


def test_scheduling_with_the_caches_node_counts_matches_looking_at_every_node() -> None:
    """Taints and cordons come and go between pods; told the cache's counts, the cycle places
    every pod as one that looks at every node does."""
    hard = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    soft = {"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}
    tolerant = [{"key": "dedicated", "operator": "Exists"}]
    changes = {
        3: node("b", cpu="2", taints=[hard]),
        6: node("c", cpu="2", taints=[soft]),
        9: node("a", cpu="2", unschedulable=True),
        12: node("b", cpu="2"),
        15: node("a", cpu="2"),
    }
    runs = _placed_without_and_with_counts(
        9,
        18,
        lambda i: pod(f"p{i}", cpu="100m", tolerations=tolerant if i % 3 == 0 else []),
        ("tainted_nodes", "unschedulable_nodes"),
        changes,
    )
    assert runs[0] == runs[1]
    assert "b" not in runs[1][4:12:3] and "a" not in runs[1][10:15]  # the taint and cordon held


def _counted(cache: SchedulerCache) -> tuple:
    """Everything the cycle reads from the cache, but node generations."""
    nodes = {
        name: (
            dict(n.requested),
            dict(n.nonzero_requested),
            n.anti_affinity_pods,
            {uid: (p.node_name, p.requests, p.labels, p.tolerations, p.obj) for uid, p in n.pods.items()},
        )
        for name, n in cache.nodes.items()
    }
    return nodes, dict(cache.pod_node), set(cache.assumed), cache.anti_affinity_pods


def test_a_bound_copy_of_an_assumed_pod_confirms_it_as_the_full_path_would() -> None:
    """confirm_assumed keeps the assumed entry (and the node's generation); the cache must
    end up as set_assigned_pod leaves it, and any change scheduling reads must decline."""
    import copy

    from kybern.scheduling import PodInfo

    template = pod("p", cpu="500m", labels={"app": "web"}).obj

    def setup() -> tuple[SchedulerCache, PodInfo]:
        cache = SchedulerCache()
        cache.set_node(node("a", cpu="2").obj)
        cache.set_node(node("b", cpu="2").obj)
        pending = PodInfo.from_obj(copy.deepcopy(template))
        cache.assume(pending, "a")
        return cache, pending

    cache, pending = setup()
    bound = copy.deepcopy(template)
    bound["spec"]["nodeName"] = "a"
    bound["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    generation = cache.nodes["a"].generation
    assert cache.confirm_assumed(pending.uid, bound)
    assert cache.nodes["a"].generation == generation
    full, _ = setup()
    full.set_assigned_pod(PodInfo.from_obj(bound))
    assert _counted(cache) == _counted(full)
    assert not cache.confirm_assumed(pending.uid, bound)  # no longer assumed

    def changed(edit: str) -> dict:
        other = copy.deepcopy(bound)
        if edit == "requests":
            other["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "700m"
        elif edit == "tolerations":
            other["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
        elif edit == "labels":
            other["metadata"]["labels"] = {"app": "db"}
        elif edit == "node":
            other["spec"]["nodeName"] = "b"
        elif edit == "terminal":
            other["status"]["phase"] = "Failed"
        elif edit == "deleting":
            other["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return other

    for edit in ("requests", "tolerations", "labels", "node", "terminal", "deleting"):
        cache, pending = setup()
        generation = cache.nodes["a"].generation
        assert not cache.confirm_assumed(pending.uid, changed(edit)), edit
        assert cache.nodes["a"].generation == generation and pending.uid in cache.assumed


def test_the_schedulers_bound_event_confirms_an_assumed_pod_like_the_full_path() -> None:
    """Through the scheduler's watch handler: a bound event of an assumed pod leaves the
    cache as handling it fully would; one whose requests changed is counted anew."""
    import copy

    from kybern.components import RunContext
    from kybern.config import Config
    from kybern.pluginmanager import load_plugins
    from kybern.plugins.scheduler.scheduler import Scheduler
    from kybern.scheduling import PodInfo

    pm = load_plugins().manager
    template = pod("p", cpu="500m", labels={"app": "web"}).obj
    results = []
    for shortcut in (True, False):
        sched = Scheduler(RunContext(config=Config(), plugins=pm))
        if not shortcut:
            sched.cache.confirm_assumed = lambda uid, obj: False  # type: ignore[method-assign]
        sched._node_event("ADDED", node("a", cpu="2").obj)
        pending = PodInfo.from_obj(copy.deepcopy(template))
        sched._pod_event("ADDED", pending.obj)
        assert pending.uid in sched.queue.pods
        sched.cache.assume(sched.queue.pods[pending.uid].pod, "a")
        bound = copy.deepcopy(pending.obj)
        bound["spec"]["nodeName"] = "a"
        sched._pod_event("MODIFIED", bound)
        resized = copy.deepcopy(bound)
        resized["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "700m"
        sched._pod_event("MODIFIED", resized)
        results.append((_counted(sched.cache), pending.uid in sched.queue.pods))
    assert results[0] == results[1]
    assert results[0][0][0]["a"][0]["cpu"] == 700
