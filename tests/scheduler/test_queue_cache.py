"""The scheduling queue (back-off, unschedulable pods moved by events) and the cache
(assume, confirm, forget)."""

from __future__ import annotations

import asyncio

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
