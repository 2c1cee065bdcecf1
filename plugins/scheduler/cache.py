"""The scheduler's view of the cluster: nodes and the pods assigned to them, fed by watches.

A pod the scheduler picked a node for is *assumed* on that node at once, before binding
completes, so the next pod of a burst already sees the node's reduced room; the watch event
of the bound pod later confirms it, a failed binding forgets it.
"""

from __future__ import annotations

from typing import Any

from kybern.scheduling import NodeInfo, PodInfo

TERMINAL_PHASES = ("Succeeded", "Failed")


class SchedulerCache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        #: uid -> node name of every pod counted on a node (bound or assumed)
        self.pod_node: dict[str, str] = {}
        #: pods counted because the scheduler assumed them, not yet confirmed by a watch
        self.assumed: set[str] = set()
        #: pods assigned to nodes the cache does not know (yet)
        self._orphans: dict[str, PodInfo] = {}
        self._node_list: list[NodeInfo] | None = None
        #: node name -> pods nominated there by preemption (uid -> pod)
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        self._nominated_node: dict[str, str] = {}
        #: pods with required anti-affinity counted on the nodes: while there are none, the
        #: cycle skips InterPodAffinity's scan of every node for them
        self.anti_affinity_pods = 0
        #: nodes with taints, and cordoned nodes: while there are none, the cycle skips
        #: TaintToleration's and NodeUnschedulable's look at every node
        self.tainted_nodes = 0
        self.unschedulable_nodes = 0

    def _count_node(self, info: NodeInfo, sign: int) -> None:
        self.tainted_nodes += sign * bool(info.taints)
        self.unschedulable_nodes += sign * info.unschedulable

    def _add(self, node: NodeInfo, pod: PodInfo) -> None:
        before = node.anti_affinity_pods
        node.add_pod(pod)
        self.anti_affinity_pods += node.anti_affinity_pods - before

    def _remove(self, node: NodeInfo, uid: str) -> PodInfo | None:
        before = node.anti_affinity_pods
        pod = node.remove_pod(uid)
        self.anti_affinity_pods += node.anti_affinity_pods - before
        return pod

    # --- nodes ---------------------------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        if self._node_list is None:
            self._node_list = list(self.nodes.values())
        return self._node_list

    def set_node(self, obj: dict[str, Any]) -> tuple[NodeInfo, bool]:
        """Add or update a node; the flag says whether anything scheduling reads changed."""
        name = (obj.get("metadata") or {}).get("name") or ""
        info = self.nodes.get(name)
        if info is None:
            info = NodeInfo.from_obj(obj)
            self.nodes[name] = info
            self._count_node(info, 1)
            self._node_list = None
            for uid, pod in list(self._orphans.items()):
                if pod.node_name == name:
                    del self._orphans[uid]
                    self._add(info, pod)
            return info, True
        before = (info.allocatable, info.labels, info.taints, info.unschedulable)
        self._count_node(info, -1)
        try:
            info.set_node(obj)
        finally:  # an unparsable quantity leaves the node half updated: counted as it is
            self._count_node(info, 1)
        return info, before != (info.allocatable, info.labels, info.taints, info.unschedulable)

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        self._node_list = None
        if info is not None:
            self.anti_affinity_pods -= info.anti_affinity_pods
            self._count_node(info, -1)
            for uid, pod in info.pods.items():
                self.pod_node.pop(uid, None)
                self.assumed.discard(uid)
                self._orphans[uid] = pod

    # --- pods ----------------------------------------------------------------------------------

    def set_assigned_pod(self, pod: PodInfo) -> bool:
        """A pod bound to a node (from a watch); True if the cache did not count it before."""
        if pod.obj.get("status", {}).get("phase") in TERMINAL_PHASES:
            self.remove_pod(pod.uid)
            return False
        was_known = pod.uid in self.pod_node and pod.uid not in self.assumed
        self.assumed.discard(pod.uid)
        old = self.pod_node.get(pod.uid)
        if old is not None and old != pod.node_name and old in self.nodes:
            self._remove(self.nodes[old], pod.uid)
        node = self.nodes.get(pod.node_name)
        if node is None:
            self._orphans[pod.uid] = pod
            self.pod_node.pop(pod.uid, None)
            return not was_known
        self._add(node, pod)
        self.pod_node[pod.uid] = pod.node_name
        return not was_known

    def refresh_assigned(self, uid: str, obj: dict[str, Any]) -> bool:
        """Take ``obj`` as the newer copy of a pod already counted as bound, when nothing
        scheduling reads has changed (same node, labels and spec, still running): most updates of
        a bound pod are its kubelet's status writes, and re-adding the pod would change the
        node's generation and throw away the plugins' per-node answers. False: handle it fully."""
        name = self.pod_node.get(uid)
        if name is None or uid in self.assumed:
            return False
        node = self.nodes.get(name)
        current = node.pods.get(uid) if node is not None else None
        if current is None:
            return False
        meta = obj.get("metadata") or {}
        if (
            (obj.get("spec") or {}).get("nodeName") != name
            or meta.get("deletionTimestamp")
            or (obj.get("status") or {}).get("phase") in TERMINAL_PHASES
            or (meta.get("labels") or {}) != current.labels
            or obj.get("spec") != current.obj.get("spec")  # an in-place resize, say
        ):
            return False
        current.obj = obj
        return True

    def confirm_assumed(self, uid: str, obj: dict[str, Any]) -> bool:
        """Take ``obj``, the watch's copy of a pod the scheduler assumed, as its confirmation
        when it is bound where it was assumed with the spec and labels it was assumed with:
        the assumed entry stays counted as it is (re-adding the pod would change the node's
        generation and throw away the plugins' per-node answers). False: handle it fully."""
        if uid not in self.assumed:
            return False
        name = self.pod_node.get(uid)
        node = self.nodes.get(name) if name is not None else None
        current = node.pods.get(uid) if node is not None else None
        if current is None:
            return False
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        if (
            spec.get("nodeName") != name
            or meta.get("deletionTimestamp")
            or (obj.get("status") or {}).get("phase") in TERMINAL_PHASES
            or (meta.get("labels") or {}) != current.labels
        ):
            return False
        # the binding sets spec.nodeName only: anything else changed, the pod is parsed again
        unbound = dict(spec)
        del unbound["nodeName"]
        if unbound != (current.obj.get("spec") or {}):
            return False
        current.obj = obj
        self.assumed.discard(uid)
        return True

    def remove_pod(self, uid: str) -> PodInfo | None:
        self.assumed.discard(uid)
        self._orphans.pop(uid, None)
        name = self.pod_node.pop(uid, None)
        if name is None or name not in self.nodes:
            return None
        return self._remove(self.nodes[name], uid)

    def assume(self, pod: PodInfo, node_name: str) -> PodInfo:
        """Count ``pod`` on ``node_name`` now; returns the assumed copy."""
        assumed = PodInfo(**{f: getattr(pod, f) for f in PodInfo.__slots__})  # type: ignore[attr-defined]
        assumed.node_name = node_name
        self._add(self.nodes[node_name], assumed)
        self.pod_node[pod.uid] = node_name
        self.assumed.add(pod.uid)
        return assumed

    def forget(self, uid: str) -> None:
        """Binding failed: stop counting the assumed pod."""
        if uid in self.assumed:
            self.remove_pod(uid)

    def nominate(self, pod: PodInfo, node_name: str) -> None:
        self.clear_nomination(pod.uid)
        self.nominated.setdefault(node_name, {})[pod.uid] = pod
        self._nominated_node[pod.uid] = node_name

    def clear_nomination(self, uid: str) -> None:
        node = self._nominated_node.pop(uid, None)
        if node is not None:
            waiting = self.nominated.get(node, {})
            waiting.pop(uid, None)
            if not waiting:
                self.nominated.pop(node, None)

    def nominated_pods(self) -> dict[str, list[PodInfo]] | None:
        if not self.nominated:
            return None
        return {node: list(pods.values()) for node, pods in self.nominated.items()}

    def is_counted(self, uid: str) -> bool:
        return uid in self.pod_node
