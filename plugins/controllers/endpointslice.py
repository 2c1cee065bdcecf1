"""The EndpointSlice controller (kube's pkg/controller/endpointslice), with mirroring.

For a Service with a selector, its pods become ``discovery.k8s.io/v1`` EndpointSlices
(addressType IPv4, at most 100 endpoints each), grouped by the ports they resolve to, each
endpoint with conditions ready/serving/terminating, its node, hostname and pod reference.
Slices carry ``kubernetes.io/service-name``, ``endpointslice.kubernetes.io/managed-by`` and an
owner reference to the Service; a Service with no endpoints keeps one empty slice, as kube's
placeholder. Terminating pods stay listed (not ready, serving while still Ready), so a
proxy can drain them.

For a Service without a selector (``default/kubernetes``, ``kube-system/kube-dns``, or one a
user wires by hand) the Endpoints object written by its owner is mirrored into slices
managed by ``endpointslicemirroring-controller.k8s.io``, as kube's mirroring controller does:
a proxy reading slices then sees every Service.
"""

from __future__ import annotations

import time
from typing import Any

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController
from kybern.plugins.controllers.endpoints import (
    ServicePodIndex,
    endpoint_fingerprint,
    find_port,
    is_headless,
    is_terminal,
    managed_labels,
    pod_hostname,
    pod_ip,
    selects,
    service_selector,
    target_ref,
)

Obj = dict[str, Any]

RESOURCE = "endpointslices.discovery.k8s.io"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
MIRROR_MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
#: kube's --max-endpoints-per-slice default
MAX_ENDPOINTS_PER_SLICE = 100

PortKey = tuple[tuple[str, int, str], ...]


def _ports_json(ports: PortKey) -> list[Obj]:
    return [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]


def desired_from_pods(svc: Obj, pods: list[Obj]) -> dict[PortKey, list[Obj]]:
    """Endpoints per resolved port set, sorted by address."""
    spec = svc.get("spec") or {}
    tolerate = bool(spec.get("publishNotReadyAddresses"))
    ports = spec.get("ports") or []
    groups: dict[PortKey, list[Obj]] = {}
    for pod in pods:
        ip = pod_ip(pod)
        if not ip or is_terminal(pod) or ":" in ip:
            continue
        terminating = bool(util.meta(pod).get("deletionTimestamp"))
        ready_pod = util.is_pod_ready(pod)
        resolved: set[tuple[str, int, str]] = set()
        for sp in ports:
            number = find_port(pod, sp)
            if number is not None:
                resolved.add((sp.get("name") or "", number, sp.get("protocol") or "TCP"))
        if ports and not resolved:
            continue
        if not ports and not is_headless(svc):
            continue
        endpoint: Obj = {
            "addresses": [ip],
            "conditions": {
                "ready": (ready_pod or tolerate) and not terminating,
                "serving": ready_pod or tolerate,
                "terminating": terminating,
            },
            "targetRef": target_ref(pod),
        }
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            endpoint["nodeName"] = node
        hostname = pod_hostname(pod, svc)
        if hostname:
            endpoint["hostname"] = hostname
        groups.setdefault(tuple(sorted(resolved)), []).append(endpoint)
    for endpoints in groups.values():
        endpoints.sort(key=lambda e: e["addresses"][0])
    return groups


def desired_from_endpoints(ep: Obj) -> dict[PortKey, list[Obj]]:
    """Mirror an Endpoints object: each subset's addresses under its ports."""
    groups: dict[PortKey, list[Obj]] = {}
    for subset in ep.get("subsets") or []:
        key: PortKey = tuple(
            sorted(
                (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP")
                for p in subset.get("ports") or []
            )
        )
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(field) or []:
                ip = address.get("ip") or ""
                if not ip or ":" in ip:
                    continue
                endpoint: Obj = {
                    "addresses": [ip],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                }
                for name in ("nodeName", "hostname", "targetRef"):
                    if address.get(name):
                        endpoint[name] = address[name]
                groups.setdefault(key, []).append(endpoint)
    for endpoints in groups.values():
        endpoints.sort(key=lambda e: e["addresses"][0])
    return groups


def chunk(groups: dict[PortKey, list[Obj]]) -> list[tuple[PortKey, list[Obj]]]:
    """Desired slices: each port set's endpoints in runs of at most 100; one empty slice
    when there is nothing (kube's placeholder)."""
    out: list[tuple[PortKey, list[Obj]]] = []
    for ports in sorted(groups):
        endpoints = groups[ports]
        for i in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE):
            out.append((ports, endpoints[i : i + MAX_ENDPOINTS_PER_SLICE]))
    return out or [((), [])]


def _slice_port_key(slice_: Obj) -> PortKey:
    return tuple(
        sorted(
            (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP")
            for p in slice_.get("ports") or []
        )
    )


class EndpointSliceController(QueueController):
    component = "endpointslice-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.informers.informer("services")
        self.pods = ctx.informers.informer("pods")
        self.endpoints = ctx.informers.informer("endpoints")
        self.slices = ctx.informers.informer(RESOURCE)
        self.slices.add_indexers({"service": self._slice_service_key})
        self.index = ServicePodIndex(self.services)
        self.services.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._enqueue
        )
        self.pods.add_event_handler(
            on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed
        )
        self.endpoints.add_event_handler(
            on_add=self._endpoints_changed,
            on_update=lambda old, new: self._endpoints_changed(new),
            on_delete=self._endpoints_changed,
        )
        self.slices.add_event_handler(on_delete=self._slice_changed)
        #: slices created but not yet in the cache, per Service key (kube's expectations):
        #: syncing before they show would create them twice
        self._created: dict[str, tuple[set[str], float]] = {}

    @staticmethod
    def _slice_service_key(slice_: Obj) -> list[str]:
        name = (util.meta(slice_).get("labels") or {}).get(SERVICE_NAME_LABEL)
        return [util.key_of(util.namespace_of(slice_), name)] if name else []

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(util.key_of(util.namespace_of(obj), util.name_of(obj)))

    def _pod_changed(self, pod: Obj) -> None:
        for key in self.index.keys_for(pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if endpoint_fingerprint(old) == endpoint_fingerprint(new):
            return
        for key in self.index.keys_for(old) | self.index.keys_for(new):
            self.queue.add(key)

    def _endpoints_changed(self, ep: Obj) -> None:
        key = util.key_of(util.namespace_of(ep), util.name_of(ep))
        svc = self.services.store.get(key)
        if svc is None or service_selector(svc) is None:
            self.queue.add(key)

    def _slice_changed(self, slice_: Obj) -> None:
        for key in self._slice_service_key(slice_):
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.store.get(key)
        pending = self._created.get(key)
        if pending is not None:
            names, since = pending
            if any(self.slices.store.get(util.key_of(ns, n)) is None for n in names) and (
                time.monotonic() - since < 5.0
            ):
                self.queue.add_after(key, 0.05)
                return
            del self._created[key]
        existing = self.slices.store.by_index("service", key)
        if svc is None:
            for slice_ in existing:  # the garbage collector would too; this is quicker
                await self._delete(slice_)
            return
        if service_selector(svc) is None:
            ep = self.endpoints.store.get(key)
            managed_by = MIRROR_MANAGED_BY
            if ep is None:
                wanted: list[tuple[PortKey, list[Obj]]] = []
            else:
                wanted = chunk(desired_from_endpoints(ep))
        else:
            managed_by = MANAGED_BY
            pods = [p for p in self.pods.store.list(ns) if selects(svc, p)]
            wanted = chunk(desired_from_pods(svc, pods))
        ours = [s for s in existing if (util.meta(s).get("labels") or {}).get(MANAGED_BY_LABEL) == managed_by]
        ours.sort(key=util.name_of)
        labels = {**managed_labels(svc), SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: managed_by}
        owner = {
            "apiVersion": "v1",
            "kind": "Service",
            "name": name,
            "uid": util.uid_of(svc),
            "controller": True,
            "blockOwnerDeletion": True,
        }
        # reuse slices that already have the wanted ports first, then any other
        free = list(ours)
        plan: list[tuple[Obj | None, PortKey, list[Obj]]] = []
        for ports, endpoints in wanted:
            match = next((s for s in free if _slice_port_key(s) == ports), None)
            if match is not None:
                free.remove(match)
            plan.append((match, ports, endpoints))
        for i, (match, ports, endpoints) in enumerate(plan):
            if match is None and free:
                plan[i] = (free.pop(0), ports, endpoints)
        for current, ports, endpoints in plan:
            body: Obj = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": _ports_json(ports),
            }
            if current is None:
                body["metadata"] = {
                    "generateName": f"{name}-",
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [owner],
                }
                made = await self.client.create(RESOURCE, body, ns)
                names, _ = self._created.setdefault(key, (set(), time.monotonic()))
                names.add(util.name_of(made))
                continue
            same = (
                (current.get("endpoints") or []) == endpoints
                and (current.get("ports") or []) == body["ports"]
                and (util.meta(current).get("labels") or {}) == labels
            )
            if same:
                continue
            body["metadata"] = {**util.meta(current), "labels": labels, "ownerReferences": [owner]}
            await self.client.update(RESOURCE, body, ns)
        for slice_ in free:
            await self._delete(slice_)
        for slice_ in existing:  # the other manager's (a selector was added or removed)
            other = (util.meta(slice_).get("labels") or {}).get(MANAGED_BY_LABEL)
            if other != managed_by and other in (MANAGED_BY, MIRROR_MANAGED_BY):
                await self._delete(slice_)

    async def _delete(self, slice_: Obj) -> None:
        try:
            await self.client.delete(RESOURCE, util.name_of(slice_), util.namespace_of(slice_))
        except ApiError as exc:
            if not exc.not_found:
                raise


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="endpointslice",
            factory=EndpointSliceController,
            description="EndpointSlices from pods, and mirrored from selectorless Endpoints",
        )
    ]
