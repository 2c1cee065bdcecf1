"""The scheduler component in this process (against a real API server whose own scheduler is
disabled), with an extra plugin registered the way an entry point would be: a binder that
fails each pod's first binding, to check unassume and retry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path

from kybern import hookimpl
from kybern.client import HttpApiClient
from kybern.components import RunContext
from kybern.config import Config
from kybern.pluginmanager import load_plugins
from kybern.plugins.scheduler import scheduler as scheduler_module
from kybern.plugins.scheduler.config import discover_plugins, parse_config
from kybern.plugins.scheduler.defaults import defaultbinder
from kybern.plugins.scheduler.scheduler import Scheduler
from kybern.scheduling import CycleState, PodInfo
from support.cluster import running_server

from .kube import apply, make_nodes, namespace, pod_manifest, pods


class FlakyBinder:
    """Refuses every pod's first binding, then binds like DefaultBinder."""

    SCHEDULER_PLUGIN_NAME = "FlakyBinder"

    def __init__(self) -> None:
        self.refused: set[str] = set()

    async def _refuse(self) -> str:
        return "flaky binder says no"

    @hookimpl
    def kybern_sched_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Awaitable[str | None]:
        if pod.uid not in self.refused:
            self.refused.add(pod.uid)
            return self._refuse()
        return defaultbinder.kybern_sched_bind(state, pod, node_name)


def test_failed_binding_is_unassumed_and_retried(tmp_path: Path) -> None:
    with running_server(tmp_path, "--disable", "scheduler", "--disable", "controller-manager") as server:
        ns = namespace(server, "flaky")
        make_nodes(server, {"name": "flaky-n", "cpu": "1"})
        apply(server, [pod_manifest(f"p{i}", ns, cpu="400m") for i in range(3)])

        pm = load_plugins().manager
        flaky = FlakyBinder()
        pm.register(flaky, name="flaky-binder")
        doc = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "profiles": [
                {
                    "plugins": {
                        "bind": {
                            "disabled": [{"name": "DefaultBinder"}],
                            "enabled": [{"name": "FlakyBinder"}],
                        }
                    }
                }
            ],
        }
        config = parse_config(doc, discover_plugins(pm))
        ca = server.data_dir / "tls" / "ca.crt"
        token = (server.data_dir / "token").read_text().strip()
        url = f"https://127.0.0.1:{server.port}"

        async def main() -> dict[str, int]:
            ctx = RunContext(config=Config(), plugins=pm)
            ctx.api = lambda user_agent="kybern": HttpApiClient(url, token, ca, user_agent=user_agent)
            scheduler = Scheduler(ctx, config)
            await scheduler.start()
            try:
                for _ in range(200):
                    if scheduler.scheduled == 2:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)  # let the watch confirm the bindings
                node = scheduler.cache.nodes["flaky-n"]
                return {
                    "scheduled": scheduler.scheduled,
                    "cpu": node.requested["cpu"],
                    "pods": len(node.pods),
                }
            finally:
                ctx.stopping.set()
                await scheduler.stop()

        result = asyncio.run(main())
        # 1 cpu holds two 400m pods; each was refused once, unassumed, and bound on retry
        assert result == {"scheduled": 2, "cpu": 800, "pods": 2}
        items = pods(server, ns)
        assert sorted(p["spec"].get("nodeName", "") for p in items) == ["", "flaky-n", "flaky-n"]
        events = json.loads(server.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        refused = [e for e in events if "Binding rejected: flaky binder says no" in e["message"]]
        assert len({e["involvedObject"]["name"] for e in refused}) >= 2


class GatedBinder:
    """Holds every binding until the test opens the gate, counting how many wait at once."""

    SCHEDULER_PLUGIN_NAME = "GatedBinder"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0

    async def _bind(self, state: CycleState, pod: PodInfo, node_name: str) -> str | None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        return await defaultbinder.kybern_sched_bind(state, pod, node_name)

    @hookimpl
    def kybern_sched_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Awaitable[str | None]:
        return self._bind(state, pod, node_name)


def test_a_burst_waits_in_the_queue_while_every_binding_slot_is_busy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(scheduler_module, "MAX_BINDING", 2)
    with running_server(tmp_path, "--disable", "scheduler", "--disable", "controller-manager") as server:
        ns = namespace(server, "slots")
        make_nodes(server, {"name": "slots-n", "cpu": "4"})
        apply(server, [pod_manifest(f"p{i}", ns, cpu="100m") for i in range(5)])

        pm = load_plugins().manager
        gated = GatedBinder()
        pm.register(gated, name="gated-binder")
        doc = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "profiles": [
                {
                    "plugins": {
                        "bind": {
                            "disabled": [{"name": "DefaultBinder"}],
                            "enabled": [{"name": "GatedBinder"}],
                        }
                    }
                }
            ],
        }
        config = parse_config(doc, discover_plugins(pm))
        ca = server.data_dir / "tls" / "ca.crt"
        token = (server.data_dir / "token").read_text().strip()
        url = f"https://127.0.0.1:{server.port}"

        async def main() -> dict[str, int]:
            ctx = RunContext(config=Config(), plugins=pm)
            ctx.api = lambda user_agent="kybern": HttpApiClient(url, token, ca, user_agent=user_agent)
            scheduler = Scheduler(ctx, config)
            await scheduler.start()
            try:
                for _ in range(100):
                    if gated.waiting == 2:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # room for a third decision, if the loop would make one
                held = {"binding": gated.waiting, "assumed": len(scheduler.cache.assumed)}
                held["queued"] = scheduler.queue.counts()["active"]
                gated.gate.set()
                for _ in range(200):
                    if scheduler.scheduled == 5:
                        break
                    await asyncio.sleep(0.05)
                return held | {"scheduled": scheduler.scheduled, "most": gated.most_waiting}
            finally:
                ctx.stopping.set()
                await scheduler.stop()

        result = asyncio.run(main())
        # two bindings in flight, the other three pods still in the queue (not assumed), then all bound
        assert result == {"binding": 2, "assumed": 2, "queued": 3, "scheduled": 5, "most": 2}
        assert all(p["spec"].get("nodeName") == "slots-n" for p in pods(server, ns))
