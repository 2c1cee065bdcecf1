"""Node IPAM (kube's range allocator in pkg/controller/nodeipam): a /24 of the cluster CIDR
for every node without spec.podCIDR.

The set of ranges in use is rebuilt from the nodes themselves on every start (the informer's
first list), so allocations survive restarts without state of their own and never repeat. A
node that already has a podCIDR (one the kubelet chose before IPAM got to it, or an earlier
allocation) keeps it: the range is just recorded as used. Writes carry the resourceVersion the
decision was made on, so a kubelet writing its own range meanwhile wins and is not
overwritten.

The cluster CIDR is ``--cluster-cidr`` (the option the kubelet plugin declares; both read the
same value).
"""

from __future__ import annotations

import ipaddress

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController
from loguru import logger

log = logger.bind(component="node-ipam-controller")

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
NODE_MASK = 24


class RangeAllocator:
    """The /24s of a cluster CIDR, handed out lowest first."""

    def __init__(self, cluster_cidr: str, mask: int = NODE_MASK) -> None:
        self.cluster = ipaddress.ip_network(cluster_cidr, strict=False)
        self.mask = max(mask, self.cluster.prefixlen)
        self.used: set[str] = set()
        self._count = 2 ** (self.mask - self.cluster.prefixlen)
        self._next = 0

    def occupy(self, cidr: str) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return
        if net.version == self.cluster.version and net.subnet_of(self.cluster):  # type: ignore[arg-type]
            self.used.add(str(net))

    def release(self, cidr: str) -> None:
        self.used.discard(cidr)

    def _nth(self, i: int) -> str:
        size = 2 ** (self.cluster.max_prefixlen - self.mask)
        base = int(self.cluster.network_address) + i * size
        return f"{ipaddress.ip_address(base)}/{self.mask}"

    def allocate(self) -> str:
        for step in range(self._count):
            i = (self._next + step) % self._count
            cidr = self._nth(i)
            if cidr not in self.used:
                self.used.add(cidr)
                self._next = (i + 1) % self._count
                return cidr
        raise RuntimeError(f"the cluster CIDR {self.cluster} has no free /{self.mask} left")


class NodeIpamController(QueueController):
    component = "node-ipam-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        extra = ctx.config.extra if ctx.config is not None else {}
        self.allocator = RangeAllocator(str(extra.get("cluster_cidr") or DEFAULT_CLUSTER_CIDR))
        self.informer = ctx.informers.informer("nodes")
        self.informer.add_event_handler(
            on_add=self._seen, on_update=lambda old, new: self._seen(new), on_delete=self._deleted
        )

    def _seen(self, node: util.Obj) -> None:
        cidrs = _cidrs(node)
        for cidr in cidrs:
            self.allocator.occupy(cidr)
        if not cidrs:
            self.queue.add(util.name_of(node))

    def _deleted(self, node: util.Obj) -> None:
        for cidr in _cidrs(node):
            self.allocator.release(cidr)

    async def run(self, workers: int) -> None:
        # every range in use is known before the first allocation (the manager starts workers
        # after the informers' first list, and _seen recorded them)
        await super().run(1)  # one worker: allocation order is the allocator's, no races

    async def sync(self, key: str) -> None:
        node = self.informer.store.get(key)
        if node is None or _cidrs(node):
            return
        cidr = self.allocator.allocate()
        patch = {
            "metadata": {"resourceVersion": util.meta(node).get("resourceVersion")},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        }
        try:
            await self.client.patch("nodes", key, patch)
        except ApiError as exc:
            self.allocator.release(cidr)
            if exc.not_found:
                return
            raise  # a conflict: look again at the node as it is now
        log.info("node {}: podCIDR {}", key, cidr)
        self.recorder.event(
            {"kind": "Node", "apiVersion": "v1", "metadata": {"name": key, "uid": util.uid_of(node)}},
            "Normal",
            "CIDRAssignmentSucceeded",
            f"Node {key} got podCIDR {cidr}",
        )


def _cidrs(node: util.Obj) -> list[str]:
    spec = node.get("spec") or {}
    out = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and spec["podCIDR"] not in out:
        out.append(spec["podCIDR"])
    return out


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="nodeipam",
            factory=NodeIpamController,
            description="assigns each node a /24 podCIDR from --cluster-cidr",
            workers=1,
        )
    ]
