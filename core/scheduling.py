"""What scheduler plugins see: pods and nodes as the scheduler's cache holds them, and the
per-pod cycle state.

The scheduling hooks (``kybern_sched_*`` in :mod:`kybern.hookspecs`) receive these instead
of API dicts or models because a scheduler looks at every node for every pod: requests are
parsed once when a pod enters the cache, not once per node. Third-party plugins import this
module only (never the scheduler plugin), so it lives in core.

Node-level hooks are vectorised (a list of nodes per call, a dict of answers back): a Python
call per (pod, node, plugin) would cap the scheduler far below kube-scheduler's pods/s.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kybern.quantity import cpu_millis, memory_bytes, parse_quantity

#: what a PreFilter/PreScore implementation returns to say "nothing to do for this pod", so
#: the framework skips that plugin's Filter/Score for it (kube-scheduler's Skip status)
SKIP = "Skip"

#: kube-scheduler's non-zero defaults, used when *scoring* pods that request nothing
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

MAX_NODE_SCORE = 100

#: one counter for every NodeInfo change, so (node name, generation) never repeats even when a
#: node is deleted and added again: plugins may cache per-node answers under it
_generations = itertools.count(1)

#: resources counted in millis (cpu) or plain integers (everything else)
CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"


class Unresolvable(str):
    """A filter reason that evicting pods cannot fix (kube's UnschedulableAndUnresolvable):
    preemption skips nodes that failed with one."""

    __slots__ = ()


def resource_amount(name: str, value: Any) -> int:
    """A quantity as the scheduler counts it: cpu in millicores, others in units (rounded up)."""
    if name == CPU:
        return cpu_millis(value)
    if name in (MEMORY, EPHEMERAL_STORAGE) or name.startswith("hugepages-"):
        return memory_bytes(value)
    return int(-(-parse_quantity(value) // 1))


def _add(into: dict[str, int], requests: Mapping[str, Any] | None) -> dict[str, int]:
    for name, value in (requests or {}).items():
        into[name] = into.get(name, 0) + resource_amount(name, value)
    return into


def _sum_into(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, value in other.items():
        into[name] = into.get(name, 0) + value


def _max_into(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, value in other.items():
        if value > into.get(name, 0):
            into[name] = value


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """Effective requests of a pod: the sum of its containers, or the largest init step if
    larger (restartable "sidecar" init containers keep running, so they add up), plus
    overhead. This is the rule kube-scheduler and the kubelet share."""
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(total, (c.get("resources") or {}).get("requests"))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        req = _add({}, (c.get("resources") or {}).get("requests"))
        if c.get("restartPolicy") == "Always":
            _sum_into(sidecars, req)
            _max_into(init_peak, sidecars)
        else:
            step = dict(sidecars)
            _sum_into(step, req)
            _max_into(init_peak, step)
    _sum_into(total, sidecars)
    _max_into(total, init_peak)
    _add(total, spec.get("overhead"))
    return total


@dataclass(slots=True, eq=False)
class PodInfo:
    """A pod with what scheduling needs pre-parsed; ``obj`` is the API object (a dict)."""

    obj: dict[str, Any]
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    requests: dict[str, int]
    priority: int
    scheduler_name: str
    node_name: str
    #: the raw pieces plugins read (empty when the pod has none)
    node_selector: dict[str, str]
    affinity: dict[str, Any]
    tolerations: list[dict[str, Any]]
    topology_spread: list[dict[str, Any]]
    creation: str

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> PodInfo:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        return cls(
            obj=obj,
            namespace=meta.get("namespace") or "default",
            name=meta.get("name") or "",
            uid=meta.get("uid") or "",
            labels=meta.get("labels") or {},
            requests=pod_requests(spec),
            priority=int(spec.get("priority") or 0),
            scheduler_name=spec.get("schedulerName") or "default-scheduler",
            node_name=spec.get("nodeName") or "",
            node_selector=spec.get("nodeSelector") or {},
            affinity=spec.get("affinity") or {},
            tolerations=spec.get("tolerations") or [],
            topology_spread=spec.get("topologySpreadConstraints") or [],
            creation=meta.get("creationTimestamp") or "",
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> dict[str, Any]:
        return self.obj.get("spec") or {}

    def has_required_anti_affinity(self) -> bool:
        return bool(
            (self.affinity.get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        )

    def nonzero(self, resource: str) -> int:
        """Request used for scoring: kube's defaults stand in for cpu/memory left unset."""
        value = self.requests.get(resource, 0)
        if value:
            return value
        if resource == CPU:
            return DEFAULT_MILLI_CPU_REQUEST
        if resource == MEMORY:
            return DEFAULT_MEMORY_REQUEST
        return 0


@dataclass(slots=True, eq=False)
class NodeInfo:
    """A node and the pods assigned (or assumed) to it, with running totals of requests."""

    obj: dict[str, Any]
    name: str
    labels: dict[str, str]
    allocatable: dict[str, int]
    taints: list[dict[str, Any]]
    unschedulable: bool
    pods: dict[str, PodInfo] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)
    #: requests with kube's non-zero defaults, for scoring
    nonzero_requested: dict[str, int] = field(default_factory=dict)
    #: pods here that carry required anti-affinity (checked by every incoming pod)
    anti_affinity_pods: int = 0
    #: changes on every change of the node or its pods (unique across all nodes), so plugins
    #: can cache per-node answers
    generation: int = 0

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> NodeInfo:
        info = cls(obj=obj, name="", labels={}, allocatable={}, taints=[], unschedulable=False)
        info.set_node(obj)
        return info

    def set_node(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        self.obj = obj
        self.name = meta.get("name") or ""
        self.labels = meta.get("labels") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = {k: resource_amount(k, v) for k, v in alloc.items()}
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        self.generation = next(_generations)

    def add_pod(self, pod: PodInfo) -> None:
        if pod.uid in self.pods:
            self.remove_pod(pod.uid)
        self.pods[pod.uid] = pod
        req = self.requested
        for name, value in pod.requests.items():
            req[name] = req.get(name, 0) + value
        req[PODS] = req.get(PODS, 0) + 1
        nz = self.nonzero_requested
        nz[CPU] = nz.get(CPU, 0) + pod.nonzero(CPU)
        nz[MEMORY] = nz.get(MEMORY, 0) + pod.nonzero(MEMORY)
        if pod.has_required_anti_affinity():
            self.anti_affinity_pods += 1
        self.generation = next(_generations)

    def remove_pod(self, uid: str) -> PodInfo | None:
        pod = self.pods.pop(uid, None)
        if pod is None:
            return None
        req = self.requested
        for name, value in pod.requests.items():
            req[name] = req.get(name, 0) - value
        req[PODS] = req.get(PODS, 0) - 1
        nz = self.nonzero_requested
        nz[CPU] -= pod.nonzero(CPU)
        nz[MEMORY] -= pod.nonzero(MEMORY)
        if pod.has_required_anti_affinity():
            self.anti_affinity_pods -= 1
        self.generation = next(_generations)
        return pod

    def clone(self) -> NodeInfo:
        """A copy whose pod set can change without touching the cache (preemption dry runs)."""
        copy = NodeInfo(
            obj=self.obj,
            name=self.name,
            labels=self.labels,
            allocatable=self.allocatable,
            taints=self.taints,
            unschedulable=self.unschedulable,
        )
        for pod in self.pods.values():
            copy.add_pod(pod)
        return copy


@dataclass(slots=True, eq=False)
class CycleState:
    """Per-pod scratch space for one scheduling attempt.

    ``data`` is for plugins (key it by your plugin name); ``all_nodes`` is every node in the
    snapshot (PodTopologySpread and InterPodAffinity count pods cluster-wide);
    ``args`` holds each plugin's pluginConfig args of the pod's profile; ``client`` is an
    :class:`kybern.client.ApiClient` for binders and preemption.
    """

    profile: str
    all_nodes: list[NodeInfo]
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    client: Any = None
    #: ``run_filters(pod, nodes, all_nodes) -> reasons``: the profile's PreFilter and Filter
    #: on other node infos (preemption's dry runs on clones with victims removed)
    run_filters: Any = None
    #: pods with required anti-affinity on ``all_nodes``, nodes of ``all_nodes`` with taints and
    #: cordoned ones, when the caller keeps those counts (the scheduler's cache does): a plugin
    #: told there are none skips its look at every node (clones of those nodes, as preemption
    #: and nominated pods make, have the same taints). None: unknown, plugins look
    anti_affinity_pods: int | None = None
    tainted_nodes: int | None = None
    unschedulable_nodes: int | None = None

    def plugin_args(self, plugin: str) -> dict[str, Any]:
        return self.args.get(plugin) or {}


@dataclass(frozen=True, slots=True)
class PostFilterResult:
    """What a PostFilter plugin (preemption) decided: the node the pod is nominated to (None
    when nothing helps) and the message that follows "preemption: " in the pod's condition."""

    nominated_node: str | None
    message: str


def tolerates(tolerations: list[dict[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Does any toleration match the taint (core/v1 Toleration.ToleratesTaint)?"""
    for tol in tolerations:
        effect = tol.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = tol.get("key") or ""
        op = tol.get("operator") or "Equal"
        if key and key != taint.get("key"):
            continue
        if op == "Exists":
            return True
        if op == "Equal" and key and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False
