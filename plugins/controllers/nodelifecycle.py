"""Node lifecycle (kube's pkg/controller/nodelifecycle) and NoExecute taint eviction
(kube's taint-eviction-controller).

Health is judged from what this controller *observes*, not from the timestamps written (clock
skew between machines must not matter): every time a node's Lease renewTime or its Ready
heartbeat changes, the node's probe time is "now". A node whose probe time is older than
``--node-monitor-grace-period`` (40 s) gets every condition its kubelet reports set to Unknown
(reason NodeStatusUnknown, "Kubelet stopped posting node status."), its pods marked not
ready, and the ``node.kubernetes.io/unreachable`` taint (``not-ready`` when the kubelet says
Ready=False) with effects NoSchedule and NoExecute. Other conditions map to their NoSchedule
taints (memory/disk/PID pressure, network unavailable) and spec.unschedulable to
``node.kubernetes.io/unschedulable``, as TaintNodesByCondition does. Taints go when the
condition clears.

Eviction: a pod on a node with NoExecute taints that it does not tolerate is deleted at once;
one that tolerates them all for a while is deleted when the shortest tolerationSeconds since
the taint's timeAdded have passed. The API server gives every pod the DefaultTolerationSeconds
tolerations (300 s for not-ready and unreachable); ``--pod-eviction-timeout`` replaces those
default 300 s (only tolerations of exactly that admission default) so a cluster can evict
sooner or later. Deleted pods stay Terminating until their kubelet confirms (as on kube): the
ReplicaSet does not count them and creates replacements on healthy nodes.

Like kube, evictions stop when every zone (topology.kubernetes.io/region and zone labels) has
lost all its nodes, which points at the control plane's own network rather than the nodes
(NoExecute taints even come off then), and in small zones (<= 50 nodes) in partial disruption
(more than 2 and at least 55 % of the nodes not ready).

The pod garbage collector (kube's podgc, controller ``podgc``) lives here too: it removes the
pods that nobody else would (see ``PodGarbageCollector``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import click
from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.informers import index_by_node_name
from kybern.plugins.controllers import util
from kybern.plugins.controllers.durations import parse_duration
from loguru import logger

log = logger.bind(component="node-lifecycle-controller")

LEASE_NAMESPACE = "kube-node-lease"
NODE_INDEX = "nodelifecycle-node"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
#: TaintNodesByCondition: condition type -> (status that taints, taint key)
CONDITION_TAINTS = {
    "MemoryPressure": ("True", "node.kubernetes.io/memory-pressure"),
    "DiskPressure": ("True", "node.kubernetes.io/disk-pressure"),
    "PIDPressure": ("True", "node.kubernetes.io/pid-pressure"),
    "NetworkUnavailable": ("True", "node.kubernetes.io/network-unavailable"),
}
MANAGED_KEYS = frozenset({NOT_READY, UNREACHABLE, UNSCHEDULABLE, *(k for _, k in CONDITION_TAINTS.values())})
#: conditions a kubelet reports (the ones turned Unknown)
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
NORMAL, PARTIAL_DISRUPTION, FULL_DISRUPTION = "Normal", "PartialDisruption", "FullDisruption"
#: kube's --unhealthy-zone-threshold and --large-cluster-size-threshold
UNHEALTHY_ZONE_THRESHOLD = 0.55
LARGE_CLUSTER_THRESHOLD = 50
#: how long a pod's node must be missing before the pod is collected (kube's quarantineTime)
ORPHAN_QUARANTINE = 40.0
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
DEFAULT_TOLERATION_SECONDS = 300


def tolerates(toleration: util.Obj, taint: util.Obj) -> bool:
    """kube's Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


class NodeLifecycleController:
    component = "node-lifecycle-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder(self.component)
        extra = ctx.config.extra if ctx.config is not None else {}
        self.grace = parse_duration(extra.get("node_monitor_grace_period"), 40.0)
        self.eviction_timeout = parse_duration(extra.get("pod_eviction_timeout"), 300.0)
        self.period = parse_duration(extra.get("node_monitor_period"), min(5.0, max(0.5, self.grace / 8)))
        self.nodes = ctx.informers.informer("nodes")
        self.leases = ctx.informers.informer("leases.coordination.k8s.io", LEASE_NAMESPACE)
        self.pods = ctx.informers.informer("pods")
        self.pods.add_indexers({NODE_INDEX: index_by_node_name})
        #: node name -> (last observed heartbeat marker, monotonic time it was observed)
        self.probes: dict[str, tuple[Any, float]] = {}
        self._all_down = False
        self._stop = asyncio.Event()

    async def run(self, workers: int) -> None:
        while not self._stop.is_set():
            try:
                await self.monitor()
            except Exception as exc:
                log.opt(exception=not isinstance(exc, ApiError)).warning("node monitor pass failed: {}", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period)

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            await self.recorder.flush()

    # --- health -------------------------------------------------------------------------------

    def _heartbeat(self, node: util.Obj) -> Any:
        name = util.name_of(node)
        lease = self.leases.store.get_by_name(LEASE_NAMESPACE, name)
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        ready = _condition(node, "Ready") or {}
        return (renew, ready.get("lastHeartbeatTime"), ready.get("status"))

    def _stale(self, node: util.Obj, now: float) -> bool:
        name = util.name_of(node)
        marker = self._heartbeat(node)
        seen = self.probes.get(name)
        if seen is None or seen[0] != marker:
            self.probes[name] = (marker, now)
            return False
        return now - seen[1] > self.grace

    async def monitor(self) -> None:
        now = time.monotonic()
        nodes = []
        for node in self.nodes.store.list():
            if self._stale(node, now):
                node = await self._mark_unknown(node)
            nodes.append(node)
        states = zone_states(nodes)
        all_down = bool(states) and all(state == FULL_DISRUPTION for state, _ in states.values())
        if all_down and not self._all_down:
            log.warning("every zone lost all its nodes: evictions halted (control plane disconnected?)")
        self._all_down = all_down
        for node in nodes:
            state, size = states.get(zone_of(node), (NORMAL, 0))
            # kube: no evictions when every zone is down (NoExecute taints even come off), none
            # in a small zone in partial disruption (its eviction rate is 0)
            halted = all_down or (state == PARTIAL_DISRUPTION and size <= LARGE_CLUSTER_THRESHOLD)
            await self._reconcile_taints(
                node, no_execute="remove" if all_down else "keep" if halted else "manage"
            )
            if not halted:
                await self._evict(node)
        names = {util.name_of(n) for n in nodes}
        for gone in set(self.probes) - names:
            del self.probes[gone]

    async def _mark_unknown(self, node: util.Obj) -> util.Obj:
        status = node.get("status") or {}
        conditions = [dict(c) for c in status.get("conditions") or []]
        stamp = util.now_iso()
        changed = False
        by_type = {c.get("type"): c for c in conditions}
        if "Ready" not in by_type:
            conditions.append(
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            )
            changed = True
        for cond in conditions:
            if cond.get("type") in KUBELET_CONDITIONS and cond.get("status") != "Unknown":
                cond.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                    lastTransitionTime=stamp,
                )
                changed = True
        if not changed:
            return node
        name = util.name_of(node)
        try:
            node = await self.client.patch(
                "nodes",
                name,
                {
                    "metadata": {"resourceVersion": util.meta(node).get("resourceVersion")},
                    "status": {"conditions": conditions},
                },
                subresource="status",
            )
        except ApiError as exc:
            if exc.conflict or exc.not_found:
                return node  # the kubelet just wrote: judge again next pass
            raise
        log.info("node {} stopped posting status: Ready=Unknown", name)
        self.recorder.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        await self._mark_pods_not_ready(name)
        return node

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """kube's MarkPodsNotReady: endpoints stop sending traffic to pods nobody watches."""
        for pod in self.pods.store.by_index(NODE_INDEX, node_name):
            cond = util.pod_condition(pod, "Ready")
            if cond is None or cond.get("status") == "False":
                continue
            conditions = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
            for c in conditions:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=util.now_iso())
            with contextlib.suppress(ApiError):
                await self.client.patch(
                    "pods",
                    util.name_of(pod),
                    {"status": {"conditions": conditions}},
                    namespace=util.namespace_of(pod),
                    subresource="status",
                )

    # --- taints -------------------------------------------------------------------------------

    def _wanted_taints(self, node: util.Obj) -> list[tuple[str, str]]:
        wanted: list[tuple[str, str]] = []
        ready = (_condition(node, "Ready") or {}).get("status")
        if ready == "False":
            wanted += [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
        elif ready == "Unknown":
            wanted += [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        for type_, (bad, key) in CONDITION_TAINTS.items():
            if (_condition(node, type_) or {}).get("status") == bad:
                wanted.append((key, "NoSchedule"))
        if (node.get("spec") or {}).get("unschedulable"):
            wanted.append((UNSCHEDULABLE, "NoSchedule"))
        return wanted

    async def _reconcile_taints(self, node: util.Obj, no_execute: str = "manage") -> None:
        """Make the managed taints match the node's conditions; ``no_execute`` "keep" leaves
        the NoExecute ones as they are (evictions halted), "remove" takes them off."""
        current = list((node.get("spec") or {}).get("taints") or [])
        wanted = self._wanted_taints(node)
        if no_execute != "manage":
            wanted = [w for w in wanted if w[1] != "NoExecute"]
            if no_execute == "keep":
                wanted += [
                    (t.get("key"), "NoExecute")
                    for t in current
                    if t.get("effect") == "NoExecute" and t.get("key") in MANAGED_KEYS
                ]
        keep = [
            t
            for t in current
            if t.get("key") not in MANAGED_KEYS or (t.get("key"), t.get("effect")) in wanted
        ]
        have = {(t.get("key"), t.get("effect")) for t in keep}
        added = []
        for key, effect in wanted:
            if (key, effect) not in have:
                taint = {"key": key, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = util.now_iso()
                added.append(taint)
        if not added and len(keep) == len(current):
            return
        taints = keep + added
        name = util.name_of(node)
        try:
            await self.client.patch(
                "nodes",
                name,
                {
                    "metadata": {"resourceVersion": util.meta(node).get("resourceVersion")},
                    "spec": {"taints": taints or None},
                },
            )
        except ApiError as exc:
            if not (exc.conflict or exc.not_found):
                raise
            return
        log.info("node {} taints: {}", name, ", ".join(f"{t['key']}:{t['effect']}" for t in taints) or "none")

    # --- eviction -----------------------------------------------------------------------------

    def _eviction_due(self, pod: util.Obj, taints: list[util.Obj], now: float) -> bool:
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        for taint in taints:
            matching = [t for t in tolerations if tolerates(t, taint)]
            if not matching:
                return True
            seconds: float | None = None
            for t in matching:
                if t.get("tolerationSeconds") is None:
                    continue
                value = float(t["tolerationSeconds"])
                if value == DEFAULT_TOLERATION_SECONDS and t.get("key") in (NOT_READY, UNREACHABLE):
                    value = self.eviction_timeout
                seconds = value if seconds is None else min(seconds, value)
            if seconds is None:
                continue  # tolerated forever
            added = util.parse_time(taint.get("timeAdded")) or now
            if added + max(seconds, 0.0) <= now:
                return True
        return False

    async def _evict(self, node: util.Obj) -> None:
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return
        now = time.time()
        for pod in self.pods.store.by_index(NODE_INDEX, util.name_of(node)):
            if util.meta(pod).get("deletionTimestamp") or not self._eviction_due(pod, taints, now):
                continue
            name, ns = util.name_of(pod), util.namespace_of(pod)
            with contextlib.suppress(ApiError):
                conditions = [
                    c
                    for c in (pod.get("status") or {}).get("conditions") or []
                    if c.get("type") != "DisruptionTarget"
                ]
                conditions.append(
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByTaintManager",
                        "message": "Taint manager: deleting due to NoExecute taint",
                        "lastTransitionTime": util.now_iso(),
                    }
                )
                await self.client.patch(
                    "pods", name, {"status": {"conditions": conditions}}, namespace=ns, subresource="status"
                )
            try:
                await self.client.delete("pods", name, ns, preconditions={"uid": util.uid_of(pod)})
            except ApiError as exc:
                if not (exc.not_found or exc.conflict):
                    raise
                continue
            log.info("evicted pod {}/{} from node {}", ns, name, util.name_of(node))
            self.recorder.event(
                {"kind": "Pod", "apiVersion": "v1", **pod},
                "Normal",
                "TaintManagerEviction",
                f"Marking for deletion Pod {ns}/{name}",
            )


class PodGarbageCollector:
    """kube's podgc controller: pods nobody else will ever remove.

    Every ``--pod-gc-period`` (20 s): pods bound to a node that no longer exists (confirmed
    with the API, and missing for ORPHAN_QUARANTINE seconds) and terminating pods on a node
    that is not ready and carries the ``node.kubernetes.io/out-of-service`` taint (kube's
    non-graceful node shutdown) are deleted at once (grace 0) with a DisruptionTarget
    condition; finished pods beyond ``--terminated-pod-gc-threshold`` (12500) go oldest first.
    """

    component = "pod-garbage-collector"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        extra = ctx.config.extra if ctx.config is not None else {}
        self.period = parse_duration(extra.get("pod_gc_period"), 20.0)
        self.threshold = int(extra.get("terminated_pod_gc_threshold") or 12500)
        self.nodes = ctx.informers.informer("nodes")
        self.pods = ctx.informers.informer("pods")
        #: node name -> monotonic time it was first found missing
        self.missing: dict[str, float] = {}
        self._stop = asyncio.Event()

    async def run(self, workers: int) -> None:
        while not self._stop.is_set():
            try:
                await self.collect()
            except Exception as exc:
                log.opt(exception=not isinstance(exc, ApiError)).warning("pod GC pass failed: {}", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period)

    async def stop(self) -> None:
        self._stop.set()

    async def collect(self) -> None:
        pods = self.pods.store.list()
        nodes = {util.name_of(n): n for n in self.nodes.store.list()}
        now = time.monotonic()
        terminated = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
        excess = len(terminated) - self.threshold
        if excess > 0:
            oldest = sorted(terminated, key=lambda p: util.meta(p).get("creationTimestamp", ""))[:excess]
            for pod in oldest:
                await self._delete(pod, "PodGC: terminated pods above the threshold", force=False)
        seen_missing: set[str] = set()
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                continue
            node = nodes.get(node_name)
            if node is None:
                seen_missing.add(node_name)
                first = self.missing.setdefault(node_name, now)
                if now - first >= ORPHAN_QUARANTINE and await self._node_gone(node_name):
                    await self._delete(pod, "PodGC: node no longer exists", force=True)
                continue
            if not util.meta(pod).get("deletionTimestamp"):
                continue
            ready = (_condition(node, "Ready") or {}).get("status") == "True"
            out_of_service = any(
                t.get("key") == OUT_OF_SERVICE for t in (node.get("spec") or {}).get("taints") or []
            )
            if not ready and out_of_service:
                await self._delete(pod, "PodGC: node is out of service", force=True)
        for name in set(self.missing) - seen_missing:
            del self.missing[name]

    async def _node_gone(self, name: str) -> bool:
        try:
            await self.client.get("nodes", name)
        except ApiError as exc:
            if exc.not_found:
                return True
            raise
        return False

    async def _delete(self, pod: util.Obj, message: str, force: bool) -> None:
        name, ns = util.name_of(pod), util.namespace_of(pod)
        if force:
            with contextlib.suppress(ApiError):
                conditions = [
                    c
                    for c in (pod.get("status") or {}).get("conditions") or []
                    if c.get("type") != "DisruptionTarget"
                ]
                conditions.append(
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByPodGC",
                        "message": message,
                        "lastTransitionTime": util.now_iso(),
                    }
                )
                await self.client.patch(
                    "pods", name, {"status": {"conditions": conditions}}, namespace=ns, subresource="status"
                )
        try:
            await self.client.delete(
                "pods",
                name,
                ns,
                grace_period_seconds=0 if force else None,
                preconditions={"uid": util.uid_of(pod)},
            )
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise
            return
        log.info("{} pod {}/{}", message, ns, name)


def zone_of(node: util.Obj) -> str:
    """kube's zone key: region and zone labels (nodes without them share the "" zone)."""
    labels = util.meta(node).get("labels") or {}
    return f"{labels.get(REGION_LABEL, '')}:\x00:{labels.get(ZONE_LABEL, '')}"


def zone_states(nodes: list[util.Obj]) -> dict[str, tuple[str, int]]:
    """zone -> (state, node count): FullDisruption when no node of the zone is ready,
    PartialDisruption when more than 2 and at least 55 % are not (kube's ComputeZoneState)."""
    counts: dict[str, list[int]] = {}
    for node in nodes:
        ready = (_condition(node, "Ready") or {}).get("status") == "True"
        entry = counts.setdefault(zone_of(node), [0, 0])
        entry[0 if ready else 1] += 1
    states: dict[str, tuple[str, int]] = {}
    for zone, (ready, not_ready) in counts.items():
        total = ready + not_ready
        if ready == 0 and not_ready > 0:
            state = FULL_DISRUPTION
        elif not_ready > 2 and not_ready / total >= UNHEALTHY_ZONE_THRESHOLD:
            state = PARTIAL_DISRUPTION
        else:
            state = NORMAL
        states[zone] = (state, total)
    return states


def _condition(node: util.Obj, type_: str) -> util.Obj | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="nodelifecycle",
            factory=NodeLifecycleController,
            description="marks nodes that stop renewing their Lease Unknown, taints them, evicts pods",
            workers=1,
        ),
        ControllerSpec(
            name="podgc",
            factory=PodGarbageCollector,
            description="force-deletes pods of vanished or out-of-service nodes; caps finished pods",
            workers=1,
        ),
    ]


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    if command != "server":
        return []
    return [
        click.Option(
            ["--node-monitor-grace-period"],
            default="40s",
            show_default=True,
            help="How long a node may go without renewing its Lease before it is marked Unknown",
        ),
        click.Option(
            ["--node-monitor-period"],
            default=None,
            help="How often node health is checked [default: 5s, or an eighth of the grace period]",
        ),
        click.Option(
            ["--pod-eviction-timeout"],
            default="5m0s",
            show_default=True,
            help="How long pods with the default not-ready/unreachable tolerations stay on a failed node",
        ),
        click.Option(
            ["--terminated-pod-gc-threshold"],
            type=int,
            default=12500,
            show_default=True,
            help="Finished pods kept before the oldest are deleted",
        ),
        click.Option(["--pod-gc-period"], default="20s", show_default=True, help="How often pod GC runs"),
    ]
