"""The Endpoints controller (kube's pkg/controller/endpoint): one Endpoints per selector Service.

For every Service with a selector, the pods it selects that have an IP become addresses:
Ready pods (or every pod when ``publishNotReadyAddresses`` is set) under ``addresses``, the
others under ``notReadyAddresses``; each service port is resolved per pod (a named
``targetPort`` is looked up among the pod's container ports, so pods of one Service may
listen on different numbers), and addresses with the same resolved ports share a subset.
Services without a selector are left alone: their Endpoints belong to whoever wrote them
(the API server's ``default/kubernetes``, the DNS component's ``kube-system/kube-dns``).

The pod and Service helpers here are shared with the EndpointSlice controller.
"""

from __future__ import annotations

from typing import Any

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.labels import selector_from_dict
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController

Obj = dict[str, Any]

#: label kube puts on the Endpoints/EndpointSlices of a headless Service
HEADLESS_LABEL = "service.kubernetes.io/headless"
#: kube's maxCapacity of an Endpoints object, and the annotation saying it was cut
MAX_ADDRESSES = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


# --- shared helpers ---------------------------------------------------------------------------


def service_selector(svc: Obj) -> dict[str, str] | None:
    """The Service's selector, or None when its endpoints are not managed from pods."""
    sel = (svc.get("spec") or {}).get("selector")
    return sel or None


def selects(svc: Obj, pod: Obj) -> bool:
    sel = service_selector(svc)
    if sel is None or util.namespace_of(svc) != util.namespace_of(pod):
        return False
    return selector_from_dict({"matchLabels": sel}).matches(util.meta(pod).get("labels") or {})


def is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def pod_ip(pod: Obj) -> str:
    status = pod.get("status") or {}
    ips = [i.get("ip") for i in status.get("podIPs") or [] if i.get("ip")]
    return status.get("podIP") or (ips[0] if ips else "")


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The pod's port for a service port (kube's podutil.FindPort): a number is taken as is,
    a name is looked up among the containers' ports of the same protocol."""
    target = service_port.get("targetPort")
    if target is None or target == "":
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def target_ref(pod: Obj) -> Obj:
    return {
        "kind": "Pod",
        "namespace": util.namespace_of(pod),
        "name": util.name_of(pod),
        "uid": util.uid_of(pod),
    }


def pod_hostname(pod: Obj, svc: Obj) -> str:
    """A pod's DNS hostname under a Service: only when its subdomain names that Service."""
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == util.name_of(svc):
        return str(spec["hostname"])
    return ""


def endpoint_fingerprint(pod: Obj) -> tuple[Any, ...]:
    """What of a pod the endpoints depend on: a change elsewhere needs no sync."""
    spec = pod.get("spec") or {}
    ports = [
        (
            c.get("name"),
            [(p.get("name"), p.get("containerPort"), p.get("protocol")) for p in c.get("ports") or []],
        )
        for c in spec.get("containers") or []
    ]
    return (
        pod_ip(pod),
        util.is_pod_ready(pod),
        is_terminal(pod),
        bool(util.meta(pod).get("deletionTimestamp")),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        tuple(sorted((util.meta(pod).get("labels") or {}).items())),
        repr(ports),
    )


class ServicePodIndex:
    """Finds the Services that select a pod (handlers use it to enqueue the right keys)."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def keys_for(self, pod: Obj) -> set[str]:
        ns = util.namespace_of(pod) or ""
        return {
            util.key_of(ns, util.name_of(svc)) for svc in self.services.store.list(ns) if selects(svc, pod)
        }


def managed_labels(svc: Obj) -> dict[str, str]:
    """Labels the Endpoints (and slices) carry: the Service's, plus the headless marker."""
    labels = dict(util.meta(svc).get("labels") or {})
    if is_headless(svc):
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


# --- the controller ---------------------------------------------------------------------------


def build_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """Endpoints subsets for ``svc`` from the pods it selects (kube's syncService + Repack)."""
    spec = svc.get("spec") or {}
    tolerate = bool(spec.get("publishNotReadyAddresses"))
    ports = spec.get("ports") or []
    # address key -> (address, ready, resolved ports)
    entries: dict[str, tuple[Obj, bool, set[tuple[str, int, str]]]] = {}
    for pod in pods:
        ip = pod_ip(pod)
        if not ip or util.meta(pod).get("deletionTimestamp") or is_terminal(pod):
            continue
        address: Obj = {"ip": ip, "targetRef": target_ref(pod)}
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            address["nodeName"] = node
        hostname = pod_hostname(pod, svc)
        if hostname:
            address["hostname"] = hostname
        ready = tolerate or util.is_pod_ready(pod)
        resolved: set[tuple[str, int, str]] = set()
        for sp in ports:
            number = find_port(pod, sp)
            if number is None:
                continue
            resolved.add((sp.get("name") or "", number, sp.get("protocol") or "TCP"))
        if ports and not resolved:
            continue
        if not ports and not is_headless(svc):
            continue
        entries[f"{ip}/{util.uid_of(pod)}"] = (address, ready, resolved)
    groups: dict[frozenset[tuple[str, int, str]], Obj] = {}
    for _key, (address, ready, resolved) in sorted(entries.items(), key=lambda kv: kv[1][0]["ip"]):
        subset = groups.setdefault(frozenset(resolved), {})
        subset.setdefault("addresses" if ready else "notReadyAddresses", []).append(address)
    subsets = []
    for resolved_ports, subset in groups.items():
        if resolved_ports:
            subset["ports"] = [
                {"name": n, "port": p, "protocol": proto} if n else {"port": p, "protocol": proto}
                for n, p, proto in sorted(resolved_ports)
            ]
        subsets.append(subset)
    subsets.sort(key=lambda s: repr(s.get("ports")))
    return subsets


def truncate(subsets: list[Obj]) -> tuple[list[Obj], bool]:
    """At most MAX_ADDRESSES addresses (ready ones kept first), as kube does since Endpoints
    objects grew too large; EndpointSlices carry the rest."""
    total = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets)
    if total <= MAX_ADDRESSES:
        return subsets, False
    budget = MAX_ADDRESSES
    out: list[Obj] = []
    for field in ("addresses", "notReadyAddresses"):
        for subset in subsets:
            if budget <= 0:
                break
            kept = (subset.get(field) or [])[:budget]
            budget -= len(kept)
            if kept:
                target = next((o for o in out if o.get("ports") == subset.get("ports")), None)
                if target is None:
                    target = {k: v for k, v in subset.items() if k not in ("addresses", "notReadyAddresses")}
                    out.append(target)
                target[field] = kept
    return out, True


class EndpointsController(QueueController):
    component = "endpoint-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.informers.informer("services")
        self.pods = ctx.informers.informer("pods")
        self.endpoints = ctx.informers.informer("endpoints")
        self.index = ServicePodIndex(self.services)
        self.services.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._enqueue
        )
        self.pods.add_event_handler(
            on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed
        )
        self.endpoints.add_event_handler(on_delete=self._enqueue)

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

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.store.get(key)
        current = self.endpoints.store.get(key)
        if svc is None:
            if current is not None and self._owned(current):
                try:
                    await self.client.delete("endpoints", name, ns)
                except ApiError as exc:
                    if not exc.not_found:
                        raise
            return
        if service_selector(svc) is None:
            return
        pods = [p for p in self.pods.store.list(ns) if selects(svc, p)]
        subsets, truncated = truncate(build_subsets(svc, pods))
        labels = managed_labels(svc)
        annotations = {OVER_CAPACITY: "truncated"} if truncated else {}
        if current is not None:
            old_annotations = util.meta(current).get("annotations") or {}
            same = (current.get("subsets") or []) == subsets
            same = same and (util.meta(current).get("labels") or {}) == labels
            if same and old_annotations.get(OVER_CAPACITY) == annotations.get(OVER_CAPACITY):
                return
            merged = {k: v for k, v in old_annotations.items() if k != OVER_CAPACITY} | annotations
            updated = dict(current)
            updated["metadata"] = {**util.meta(current), "labels": labels}
            if merged or "annotations" in util.meta(current):
                updated["metadata"]["annotations"] = merged
            updated["subsets"] = subsets
            updated.setdefault("apiVersion", "v1")
            updated.setdefault("kind", "Endpoints")
            await self.client.update("endpoints", updated, ns)
            return
        obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels}
            | ({"annotations": annotations} if annotations else {}),
            "subsets": subsets,
        }
        try:
            await self.client.create("endpoints", obj, ns)
        except ApiError as exc:
            if not exc.already_exists:
                raise
            self.queue.add_after(key, 0.2)  # the cache will show it shortly: update then

    @staticmethod
    def _owned(ep: Obj) -> bool:
        """Endpoints of a deleted Service go with it, except the API server's own."""
        return not (util.namespace_of(ep) == "default" and util.name_of(ep) == "kubernetes")


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [ControllerSpec(name="endpoint", factory=EndpointsController, description="Endpoints from pods")]
