"""Hollow agent benchmark: the kubelet's CPU per pod on its pod path, in process, with a fake API.

Run alone: ``.venv/bin/python tests/benchmarks/bench_hollow_agent.py [--pods 2000] [--nodes 200]
[--rounds 5]``. It prints figures and asserts nothing.

Why: a hollow agent's CPU measured end to end (a real server, a real agent process, thousands of
pods) drowns in the noise of a shared 2-core machine, where the API server, the scheduler and
other benchmarks run at the same time. Here NODES hollow ``NodeAgent``s on the simulated runtime
run in this process against a fake API that answers at once and holds the pods in a dict, so
the thread's CPU clock (``time.thread_time``) sees only the kubelet's own work. The fake's
server-side work (decoding a PATCH body, merging it, encoding the stored pod) is timed apart and
taken off; what the client does (encoding the body, decoding the answer) is counted.

Each round creates NODES fresh agents (the object cache, the event recorder and the fake API
are shared, as in one agent process) and PODS bound pods spread over them, shaped as the API
server stores them, and times four steps, in CPU microseconds per pod:

1. start: each pod's ADDED event (decoded from the watch's bytes) -> its worker's sync
   (sandbox, image, container on the simulated runtime) -> the status PATCH;
2. echo: each PATCH's answer coming back on the watch as MODIFIED (decoded) -> the worker's
   update, which should find nothing to do;
3. relist: one relist of each node (the pod lifecycle event generator);
4. resync: each worker woken once, as its periodic resync does, with nothing changed.

A first warm-up round (imports, caches) is not counted; then median and min over ROUNDS. The
loop is uvloop and the GC thresholds those the ``kybern`` command sets (core/cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from kybern import logs
from kybern.client import ApiError, PatchType, WatchEvent
from kybern.plugins.kubelet.events import EventRecorder
from kybern.plugins.kubelet.node import CidrAllocator, NodeAgent
from kybern.plugins.kubelet.nodeinfo import NodeResources
from kybern.plugins.kubelet.objcache import ObjectCache
from kybern.runtimes.simulated.runtime import SimulatedRuntime

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

NAMESPACE = "bench"
CREATED = "2026-11-27T03:10:30Z"
STEPS = ("start", "echo", "relist", "resync")
#: event-loop turns given to the workers after each step: the fake API answers without waiting,
#: so a step's work is done within a few turns (the PATCH counts printed show it)
SETTLE_TURNS = 10


def bound_pod(name: str, node: str, resource_version: int) -> dict[str, Any]:
    """A pod as the API server stores it once the scheduler bound it: defaults filled in,
    managedFields of its creator, the PodScheduled condition, status Pending."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": CREATED,
            "name": name,
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(resource_version),
            "managedFields": [
                {
                    "manager": "bench",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": CREATED,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:spec": {
                            "f:containers": {
                                ".": {},
                                'k:{"name":"c"}': {
                                    ".": {},
                                    "f:image": {},
                                    "f:imagePullPolicy": {},
                                    "f:name": {},
                                    "f:resources": {"f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
                                    "f:terminationMessagePath": {},
                                    "f:terminationMessagePolicy": {},
                                },
                            },
                            "f:dnsPolicy": {},
                            "f:enableServiceLinks": {},
                            "f:preemptionPolicy": {},
                            "f:priority": {},
                            "f:restartPolicy": {},
                            "f:schedulerName": {},
                            "f:securityContext": {},
                            "f:serviceAccount": {},
                            "f:serviceAccountName": {},
                            "f:terminationGracePeriodSeconds": {},
                            "f:tolerations": {},
                        }
                    },
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "image": "pause",
                    "imagePullPolicy": "Always",
                    "name": "c",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                }
                for taint in ("not-ready", "unreachable")
            ],
            "nodeName": node,
        },
        "status": {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": CREATED,
                }
            ],
        },
    }


def kubernetes_service() -> dict[str, Any]:
    """The ``default/kubernetes`` Service as the API server keeps it: the kubelet reads it (through
    its object cache) for the KUBERNETES_SERVICE_* variables every container gets."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "creationTimestamp": CREATED,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
            "name": "kubernetes",
            "namespace": "default",
            "uid": str(uuid.uuid4()),
            "resourceVersion": "10",
            "managedFields": [
                {
                    "manager": "kube-apiserver",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": CREATED,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {"f:labels": {".": {}, "f:component": {}, "f:provider": {}}},
                        "f:spec": {
                            "f:clusterIP": {},
                            "f:clusterIPs": {},
                            "f:internalTrafficPolicy": {},
                            "f:ipFamilies": {},
                            "f:ipFamilyPolicy": {},
                            "f:ports": {
                                ".": {},
                                'k:{"port":443,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:port": {},
                                    "f:protocol": {},
                                    "f:targetPort": {},
                                },
                            },
                            "f:sessionAffinity": {},
                            "f:type": {},
                        },
                    },
                }
            ],
        },
        "spec": {
            "clusterIP": "10.43.0.1",
            "clusterIPs": ["10.43.0.1"],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


def default_service_account() -> dict[str, Any]:
    """Read for its imagePullSecrets when the kubelet pulls an image (imagePullPolicy Always)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
    }


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, enough for the kubelet's status writes (lists are replaced whole)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


class FakeApi:
    """An ApiClient that answers at once from dicts. A PATCH goes through the bytes as on the
    wire: the client's encoding of the body and decoding of the answer are the kubelet's CPU;
    the server's part (decode, merge, encode) is added to ``server_s`` to be taken off."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {
            ("services", "default", "kubernetes"): kubernetes_service(),
            ("serviceaccounts", NAMESPACE, "default"): default_service_account(),
        }
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        #: the stored pod after each PATCH, encoded: the MODIFIED events a watch would send
        self.echoes: list[bytes] = []
        self.patches = 0
        self.server_s = 0.0
        self.rv = 1000

    async def get(
        self, resource: str, name: str, namespace: str | None = None, subresource: str | None = None
    ) -> dict[str, Any]:
        obj = self.objects.get((resource, namespace or "", name))
        if obj is None:
            raise ApiError({"code": 404, "reason": "NotFound", "message": f"{resource} {name!r} not found"})
        return obj

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": str(self.rv)},
            "items": [],
        }

    async def watch(
        self,
        resource: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        return
        yield

    async def create(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        return obj

    async def update(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return obj

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        patch_type: PatchType = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        if resource != "pods":
            return {}
        self.patches += 1
        body = _encode(patch)
        started = time.thread_time()
        key = (namespace or "", name)
        pod = merge_patch(self.pods[key], _decode(body))
        self.rv += 1
        pod["metadata"] = {**pod["metadata"], "resourceVersion": str(self.rv)}
        self.pods[key] = pod
        answer = _encode(pod)
        self.echoes.append(answer)
        self.server_s += time.thread_time() - started
        return _decode(answer)

    async def delete(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        pass


async def settle() -> None:
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)


class Bench:
    def __init__(self, pods: int, nodes: int, data_dir: Path) -> None:
        self.pods = pods
        self.nodes = nodes
        self.data_dir = data_dir
        self.api = FakeApi()
        self.cache = ObjectCache(self.api)
        # not started: its queue fills up and later events are dropped, as in a burst of starts
        self.events = EventRecorder(self.api)
        self.cidrs = CidrAllocator(self.api, "10.128.0.0/9")
        self.resources = NodeResources.hollow("8", "32Gi", 110)
        self.serial = 0

    def make_agents(self, round_no: int) -> list[NodeAgent]:
        agents = []
        for n in range(self.nodes):
            name = f"hollow-{round_no}-{n}"
            agent = NodeAgent(
                name,
                SimulatedRuntime(name),
                self.api,
                self.events,
                self.cache,
                self.data_dir / name,
                self.resources,
                "192.0.2.2",
                hollow=True,
                cidrs=self.cidrs,
            )
            # what registration sets (not timed here)
            agent.runtime_scheme = "simulated"
            agent.network = "hollow"
            agents.append(agent)
        return agents

    def cpu_us(self, started: float, server_before: float) -> float:
        """CPU microseconds per pod since ``started``, the fake server's part taken off."""
        spent = time.thread_time() - started - (self.api.server_s - server_before)
        return spent / self.pods * 1e6

    async def round(self, round_no: int) -> tuple[dict[str, float], str]:
        api = self.api
        agents = self.make_agents(round_no)
        by_name = {a.name: a for a in agents}
        batch = []
        for i in range(self.pods):
            self.serial += 1
            pod = bound_pod(f"p{self.serial:06d}", agents[i % self.nodes].name, self.serial)
            api.pods[(NAMESPACE, pod["metadata"]["name"])] = pod
            batch.append(pod)
        wire = [_encode(p) for p in batch]
        gc.collect()  # the previous round's garbage is not this round's cost
        figures: dict[str, float] = {}
        patches: dict[str, int] = {}

        patched, server, started = api.patches, api.server_s, time.thread_time()
        for i, raw in enumerate(wire):
            agents[i % self.nodes].pod_event("ADDED", _decode(raw))
            if i % 50 == 49:  # a watch hands over events in batches, not all before any sync
                await asyncio.sleep(0)
        await settle()
        figures["start"], patches["start"] = self.cpu_us(started, server), api.patches - patched

        echoes, api.echoes = api.echoes, []
        patched, server, started = api.patches, api.server_s, time.thread_time()
        for raw in echoes:
            pod = _decode(raw)
            by_name[pod["spec"]["nodeName"]].pod_event("MODIFIED", pod)
        await settle()
        figures["echo"], patches["echo"] = self.cpu_us(started, server), api.patches - patched

        patched, server, started = api.patches, api.server_s, time.thread_time()
        for agent in agents:
            await agent.relist()
        await settle()
        figures["relist"], patches["relist"] = self.cpu_us(started, server), api.patches - patched

        workers = [w for a in agents for w in a.workers.values()]
        patched, server, started = api.patches, api.server_s, time.thread_time()
        for worker in workers:
            worker.wake()
        await settle()
        figures["resync"], patches["resync"] = self.cpu_us(started, server), api.patches - patched

        running = sum(1 for w in workers if (w.pod.get("status") or {}).get("phase") == "Running")
        for agent in agents:
            await agent.stop_workers()
        api.pods.clear()
        api.echoes.clear()
        note = f"running {running}/{self.pods}; PATCHes " + " ".join(f"{s} {patches[s]}" for s in STEPS)
        return figures, note


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main(pods: int, nodes: int, rounds: int) -> None:
    logs.setup("WARNING", "text")
    print(f"hollow agent pod path: {pods} pods on {nodes} nodes, {rounds} rounds (+1 warm-up)")
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="kybern-bench-hollow-") as tmp:
        bench = Bench(pods, nodes, Path(tmp))
        results: list[dict[str, float]] = []
        for round_no in range(rounds + 1):
            figures, note = await bench.round(round_no)
            label = "warm-up" if round_no == 0 else f"round {round_no}"
            steps = ", ".join(f"{s} {figures[s]:.1f}" for s in STEPS)
            print(f"{label:>8}: {steps} us/pod (total {sum(figures.values()):.1f}); {note}")
            if round_no:
                results.append(figures)
    print(f"load average after: {load_average()}")
    print(f"\nCPU us per pod over {rounds} rounds (time.thread_time, fake server's part taken off)")
    print(f"{'step':<8} {'median':>8} {'min':>8}")
    for step in (*STEPS, "total"):
        values = [sum(r.values()) if step == "total" else r[step] for r in results]
        print(f"{step:<8} {statistics.median(values):8.1f} {min(values):8.1f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=2000, help="pods per round (default 2000)")
    parser.add_argument("--nodes", type=int, default=200, help="hollow nodes per round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    gc.set_threshold(50_000, 50, 100)
    uvloop.run(main(args.pods, max(1, args.nodes), max(1, args.rounds)))
