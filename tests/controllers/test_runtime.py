"""The controller runtime in core against a real API server: informers, work queue, leader
election, events."""

from __future__ import annotations

import asyncio

import pytest
from conftest import client_for, create_namespace, run
from kybern.events import EventRecorder
from kybern.informers import SharedInformerFactory, index_by_node_name
from kybern.leaderelection import LeaderElector
from kybern.workqueue import ItemExponentialFailureRateLimiter, RateLimitingQueue, run_workers


def pod(name: str, node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_informer_lists_watches_indexes_and_shares(server) -> None:
    ns = create_namespace(server, "inf-1")

    async def go() -> None:
        async with client_for(server) as client:
            await client.create("pods", pod("before", "n1"), ns)
            factory = SharedInformerFactory(client)
            with factory.track() as used:
                informer = factory.informer("pods")
                assert factory.informer("pods") is informer  # one watch per resource
            assert used == [informer]
            with factory.track() as used_again:
                factory.informer("pods")
            assert used_again == [informer]  # shared, yet counted for each user
            selected = factory.informer("pods", label_selector="x=y")
            assert selected is not informer and selected.label_selector == "x=y"
            informer.add_indexers({"node": index_by_node_name})
            seen: list[tuple[str, str]] = []
            informer.add_event_handler(
                on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                on_update=lambda old, new: seen.append(("update", new["metadata"]["name"])),
                on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])),
            )
            factory.start()
            assert await factory.wait_for_sync(10)
            assert ("add", "before") in seen
            assert informer.store.get(f"{ns}/before") is not None
            await client.create("pods", pod("after", "n2"), ns)
            await client.patch("pods", "before", {"metadata": {"labels": {"x": "y"}}}, namespace=ns)
            await client.delete("pods", "after", ns, grace_period_seconds=0)
            for _ in range(100):
                if ("delete", "after") in seen and ("update", "before") in seen:
                    break
                await asyncio.sleep(0.05)
            assert ("add", "after") in seen and ("delete", "after") in seen and ("update", "before") in seen
            assert [p["metadata"]["name"] for p in informer.store.by_index("node", "n1")] == ["before"]
            assert informer.store.by_index("node", "n2") == []
            assert informer.store.get(f"{ns}/before")["metadata"]["labels"] == {"x": "y"}
            assert {p["metadata"]["name"] for p in informer.store.list(ns)} == {"before"}
            # a late handler gets the cache as adds
            late: list[str] = []
            informer.add_event_handler(on_add=lambda o: late.append(o["metadata"]["name"]))
            assert "before" in late
            await factory.stop()

    run(go())


def test_informer_relists_after_expired_resource_version(server) -> None:
    ns = create_namespace(server, "inf-2")

    async def go() -> None:
        async with client_for(server) as client:
            factory = SharedInformerFactory(client)
            informer = factory.informer("configmaps", namespace=ns)
            factory.start()
            assert await informer.wait_for_sync(10)
            await informer.stop()
            # a version far in the past is out of the watch cache: 410, then a fresh list
            informer.last_resource_version = "1"
            await client.create("configmaps", {"metadata": {"name": "cm"}, "data": {"a": "b"}}, ns)
            informer.start()
            for _ in range(100):
                if informer.store.get(f"{ns}/cm") is not None:
                    break
                await asyncio.sleep(0.05)
            assert informer.store.get(f"{ns}/cm") is not None
            await informer.stop()

    run(go())


def test_informer_resync_redelivers_cached_objects(server) -> None:
    ns = create_namespace(server, "inf-3")

    async def go() -> None:
        async with client_for(server) as client:
            await client.create("configmaps", {"metadata": {"name": "cm"}}, ns)
            factory = SharedInformerFactory(client, resync_period=0.2)
            informer = factory.informer("configmaps", namespace=ns)
            resyncs: list[bool] = []
            informer.add_event_handler(on_update=lambda old, new: resyncs.append(old is new))
            factory.start()
            assert await factory.wait_for_sync(10)
            for _ in range(50):
                if len(resyncs) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert len(resyncs) >= 2 and all(resyncs)
            await factory.stop()

    run(go())


def test_workqueue_dedups_and_never_processes_a_key_twice_at_once() -> None:
    async def go() -> None:
        queue: RateLimitingQueue[str] = RateLimitingQueue(name="t")
        active: set[str] = set()
        overlaps: list[str] = []
        calls: dict[str, int] = {}
        failures = {"flaky": 2}

        async def sync(key: str) -> None:
            if key in active:
                overlaps.append(key)
            active.add(key)
            calls[key] = calls.get(key, 0) + 1
            await asyncio.sleep(0.02)
            if key == "a" and calls[key] == 1:
                queue.add("a")  # changed while processing: must run again, not concurrently
            active.discard(key)
            if failures.get(key):
                failures[key] -= 1
                raise RuntimeError("try again")

        for _ in range(5):
            queue.add("a")
        queue.add("b")
        queue.add("flaky")
        workers = asyncio.create_task(run_workers(queue, sync, workers=4, name="t"))
        for _ in range(200):
            if calls.get("flaky", 0) >= 3 and calls.get("a", 0) >= 2:
                break
            await asyncio.sleep(0.01)
        queue.shutdown()
        await asyncio.wait_for(workers, 5)
        assert overlaps == []
        assert calls["a"] == 2 and calls["b"] == 1 and calls["flaky"] == 3
        assert queue.num_requeues("flaky") == 0  # forgotten after the success

    run(go())


def test_exponential_backoff_per_item() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("k") for _ in range(5)]
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08]
    assert limiter.when("other") == 0.005
    for _ in range(40):
        limiter.when("k")
    assert limiter.when("k") == 1000.0
    limiter.forget("k")
    assert limiter.when("k") == 0.005


@pytest.mark.timeout(60)
def test_leader_election_one_leader_then_failover(server) -> None:
    async def go() -> None:
        async with client_for(server) as c1, client_for(server) as c2:
            leading: dict[str, bool] = {"a": False, "b": False}

            def elector(client, who: str) -> LeaderElector:
                async def lead() -> None:
                    leading[who] = True
                    try:
                        await asyncio.Event().wait()
                    finally:
                        leading[who] = False

                return LeaderElector(
                    client,
                    "test-lock",
                    identity=who,
                    lease_duration=3,
                    renew_deadline=2,
                    retry_period=0.5,
                    on_started_leading=lead,
                )

            a, b = elector(c1, "a"), elector(c2, "b")
            ta = asyncio.create_task(a.run())
            await asyncio.sleep(0.5)
            tb = asyncio.create_task(b.run())
            for _ in range(8):
                await asyncio.sleep(0.5)
                assert [a.is_leader, b.is_leader] == [True, False]
                assert leading == {"a": True, "b": False}
            lease = await c1.get("leases.coordination.k8s.io", "test-lock", "kube-system")
            assert lease["spec"]["holderIdentity"] == "a"
            assert lease["spec"]["leaseDurationSeconds"] == 3
            # the leader dies without releasing (a crash): b takes over after the lease expires
            ta.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ta
            for _ in range(40):
                if b.is_leader:
                    break
                await asyncio.sleep(0.25)
            assert b.is_leader and leading["b"]
            lease = await c1.get("leases.coordination.k8s.io", "test-lock", "kube-system")
            assert lease["spec"]["holderIdentity"] == "b"
            assert lease["spec"]["leaseTransitions"] == 1
            # a clean stop releases the lease at once
            b.stop()
            await asyncio.wait_for(tb, 5)
            assert not leading["b"]
            lease = await c1.get("leases.coordination.k8s.io", "test-lock", "kube-system")
            assert lease["spec"]["holderIdentity"] == ""

    run(go())


@pytest.mark.timeout(60)
def test_leader_steps_down_when_its_work_crashes(server) -> None:
    async def go() -> None:
        async with client_for(server) as client:
            runs: list[int] = []

            async def lead() -> None:
                runs.append(1)
                if len(runs) == 1:
                    raise RuntimeError("controller crashed")
                await asyncio.Event().wait()

            elector = LeaderElector(
                client,
                "crash-lock",
                lease_duration=3,
                renew_deadline=2,
                retry_period=0.3,
                on_started_leading=lead,
            )
            task = asyncio.create_task(elector.run())
            for _ in range(50):
                if len(runs) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert len(runs) == 2 and elector.is_leader  # stepped down, then led again
            elector.stop()
            await asyncio.wait_for(task, 5)

    run(go())


def test_event_recorder_deduplicates_with_count(server) -> None:
    ns = create_namespace(server, "ev-1")

    async def go() -> None:
        async with client_for(server) as client:
            cm = await client.create("configmaps", {"metadata": {"name": "cm"}}, ns)
            cm = {"kind": "ConfigMap", "apiVersion": "v1", **cm}
            recorder = EventRecorder(client, "test-controller")
            for _ in range(3):
                recorder.event(cm, "Normal", "SuccessfulCreate", "Created pod: x")
            recorder.event(cm, "Warning", "FailedCreate", "Error creating: boom")
            await recorder.flush()
            events = (await client.list("events", ns))["items"]
            by_reason = {e["reason"]: e for e in events}
            assert len(events) == 2
            ok = by_reason["SuccessfulCreate"]
            assert ok["count"] == 3 and ok["type"] == "Normal"
            assert ok["source"]["component"] == "test-controller"
            assert ok["reportingComponent"] == "test-controller"
            assert ok["involvedObject"]["uid"] == cm["metadata"]["uid"]
            assert by_reason["FailedCreate"]["count"] == 1
            await recorder.close()

    run(go())
    out = server.kubectl("describe", "configmap", "cm", "-n", ns).stdout
    assert "SuccessfulCreate" in out and "(x3 over" in out and "test-controller" in out
