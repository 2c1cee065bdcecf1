"""One node: its Node object, Lease, pod CIDR and network, and the workers of its pods.

A process may run many of these (hollow nodes); everything periodic (lease renewal, status,
runtime relist) is driven by the component for all nodes at once, so a node costs no task
or thread of its own while idle.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kybern.client import ApiClient, ApiError
from kybern.plugins.kubelet.backoff import Backoff
from kybern.plugins.kubelet.dns import DEFAULT_CLUSTER_DNS, DEFAULT_CLUSTER_DOMAIN
from kybern.plugins.kubelet.events import EventRecorder, pod_ref
from kybern.plugins.kubelet.nodeinfo import (
    KUBELET_PORT,
    NodeResources,
    condition,
    network_name,
    node_labels,
    pick_pod_cidr,
    system_info,
)
from kybern.plugins.kubelet.objcache import ObjectCache
from kybern.plugins.kubelet.podworker import PodWorker
from kybern.plugins.kubelet.pullsecrets import pod_credentials, split_image
from kybern.plugins.kubelet.volumes import VolumeManager
from kybern.runtime import (
    ContainerRuntime,
    ContainerRuntimeError,
    ImagePullError,
    ImageRef,
    PullPolicy,
    RuntimeStatus,
)
from loguru import logger

if TYPE_CHECKING:
    from kybern.plugins.kubelet.localpath import ClaimResolver

log = logger.bind(component="kubelet")

LEASE_NAMESPACE = "kube-node-lease"
START_SLOTS = 8
#: every Nth relist also looks at the sandboxes (every 10 s with the 2 s relist)
SANDBOX_RELIST_EVERY = 5
#: where the streams component (logs/exec) publishes the port it serves on
STREAMS_PORT_KEY = "kubelet.streams_port"
#: a present image stays present this long as far as IfNotPresent is concerned
IMAGE_CACHE_S = 30.0
LEASE_DURATION_S = 40
#: a node status that did not change is still written this often: the kubelet's
#: nodeStatusReportFrequency (5 min). The Lease, renewed every 10 s, is what proves the node
#: alive (the node lifecycle controller counts a renewal as a heartbeat), so the status is
#: otherwise computed every 10 s and written only when it changed (~1000 fewer PATCHes a
#: minute per thousand hollow nodes)
STATUS_REPORT_S = 300.0


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_heartbeats(status: dict[str, Any]) -> dict[str, Any]:
    conds = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in status.get("conditions") or []]
    return {**status, "conditions": conds}


class CidrAllocator:
    """Pod CIDRs for the nodes of this process that the control plane gave none: the nodes'
    list is read once (not once per node: a thousand hollow nodes would read it a thousand
    times), and claims made here are remembered, so concurrent registrations never collide.
    Agents in other processes can still race; node IPAM in the control plane will end that."""

    def __init__(self, api: ApiClient, cluster_cidr: str) -> None:
        self.api = api
        self.cluster_cidr = cluster_cidr
        self._taken: set[str] | None = None
        self._lock = asyncio.Lock()

    async def claim(self, node_name: str) -> str:
        async with self._lock:
            if self._taken is None:
                nodes = await self.api.list("nodes")
                self._taken = {
                    cidr
                    for n in nodes.get("items") or []
                    if (n.get("metadata") or {}).get("name") != node_name
                    and (cidr := (n.get("spec") or {}).get("podCIDR"))
                }
            cidr = pick_pod_cidr(node_name, self._taken, self.cluster_cidr)
            self._taken.add(cidr)
            return cidr


class NodeAgent:
    def __init__(
        self,
        name: str,
        runtime: ContainerRuntime,
        api: ApiClient,
        events: EventRecorder,
        cache: ObjectCache,
        data_dir: Path,
        resources: NodeResources,
        node_ip: str,
        *,
        control_plane: bool = False,
        hollow: bool = False,
        cidrs: CidrAllocator,
        claims: ClaimResolver | None = None,
        shared: dict[str, Any] | None = None,
        cluster_dns: str | None = DEFAULT_CLUSTER_DNS,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    ) -> None:
        self.name = name
        #: where ClusterFirst pods send DNS queries (the kube-dns Service), and the zone
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.runtime = runtime
        self.api = api
        self.events = events
        self.cache = cache
        self.data_dir = data_dir
        self.resources = resources
        self.node_ip = node_ip
        self.control_plane = control_plane
        self.hollow = hollow
        self.cidrs = cidrs
        self.claims = claims
        #: RunContext.shared: the node's streaming server publishes its port there
        self.shared = shared if shared is not None else {}
        self.volumes = VolumeManager(data_dir, cache, name)
        self.workers: dict[str, PodWorker] = {}
        self.crash_backoff = Backoff(10.0, 300.0)
        self.pull_backoff = Backoff(10.0, 300.0)
        self.sandbox_backoff = Backoff(2.0, 60.0)
        #: image pull failures: key -> time of the last failure
        self.pull_failures: dict[tuple[str, str, str], float] = {}
        self.runtime_scheme = "podman"
        self.runtime_version = "unknown://"
        self.runtime_status = RuntimeStatus(False, "container runtime status not checked yet")
        self.node_uid: str | None = None
        self.pod_cidr: str | None = None
        self.network: str | None = None
        self.network_error: str | None = None
        self._lease: dict[str, Any] | None = None
        self._status_written: dict[str, Any] | None = None
        self._status_written_at = 0.0
        self._inputs_written: tuple[Any, ...] | None = None
        self._conditions: dict[str, dict[str, Any]] = {}
        #: pods creating sandboxes or containers at once: Podman serialises much of that work,
        #: so a burst finishes sooner, pod by pod, with a few at a time than with all at once
        self.start_slots = asyncio.Semaphore(START_SLOTS)
        self._images: dict[str, tuple[float, ImageRef]] = {}
        #: the relist's last view: pod uid -> fingerprint of its containers
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._relists = 0
        #: the runtime's change counter at the last relist, if it keeps one
        self._relisted_at: int | None = None
        self._new_workers = False

    async def image_present(self, image: str) -> ImageRef | None:
        """The runtime's answer, remembered briefly: a burst of pods on one image asks once."""
        hit = self._images.get(image)
        if hit is not None and time.monotonic() - hit[0] < IMAGE_CACHE_S:
            return hit[1]
        ref = await self.runtime.image_present(image)
        if ref is not None:
            self._images[image] = (time.monotonic(), ref)
        return ref

    async def pull_image(self, pod: dict[str, Any], image: str, policy: PullPolicy) -> ImageRef:
        """Pull for ``pod``: with each matching credential of its imagePullSecrets (and its
        ServiceAccount's) in turn until one works, anonymously when none matches."""
        missing: list[str] = []
        credentials = await pod_credentials(self.cache, pod, image, missing)
        if missing:  # the kubelet's warning, word for word
            self.events.emit(
                self.name, pod_ref(pod), "Warning", "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                "attempting to pull the image may not succeed.",
            )  # fmt: skip
        if not credentials:
            ref = await self.runtime.pull_image(image, policy=policy)
        else:
            registry = split_image(image)[0]
            error: ImagePullError | None = None
            for cred in credentials:
                try:
                    ref = await self.runtime.pull_image(image, auth=cred.auth_config(registry), policy=policy)
                    break
                except ImagePullError as exc:
                    error = exc
            else:
                assert error is not None
                raise error
        self._images[image] = (time.monotonic(), ref)
        return ref

    def allocatable(self) -> dict[str, str]:
        return self.resources.allocatable()

    # ------------------------------------------------------------------ registration

    async def register(self) -> None:
        """Create or update the Node; choose the pod CIDR; set up the pod network."""
        try:
            version = await self.runtime.version()
            self.runtime_scheme = version.runtime_name
            self.runtime_version = str(version)
        except Exception as exc:  # an unusable runtime must not stop registration
            log.warning("node {}: runtime version unknown: {}", self.name, exc)
        await self.check_runtime()
        try:
            node = await self.api.get("nodes", self.name)
        except ApiError as exc:
            if not exc.not_found:
                raise
            node = None
        if node is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": node_labels(self.name, self.control_plane)},
                "spec": {},
            }
            try:
                node = await self.api.create("nodes", body)
                log.info("registered node {}", self.name)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                node = await self.api.get("nodes", self.name)
        else:
            labels = node_labels(self.name, self.control_plane)
            current = (node.get("metadata") or {}).get("labels") or {}
            if any(current.get(k) != v for k, v in labels.items()):
                node = await self.api.patch("nodes", self.name, {"metadata": {"labels": labels}})
        self.node_uid = (node.get("metadata") or {}).get("uid")
        spec = node.get("spec") or {}
        self.pod_cidr = spec.get("podCIDR")
        if not self.pod_cidr:
            await self._claim_pod_cidr()
        await self.ensure_network()
        await self.update_status(force=True)
        # the Lease is made now, as the kubelet does at start: the renewal loop then only
        # updates it (else a thousand hollow nodes' first creations land in their first round)
        try:
            await self.renew_lease()
        except ApiError as exc:
            log.warning("node {}: creating the lease failed (the renewal loop retries): {}", self.name, exc)

    async def _claim_pod_cidr(self) -> None:
        """No node IPAM yet: take a /24 of the cluster CIDR that no other node has."""
        await asyncio.sleep(0.5)  # node IPAM in the control plane, if any, gets the first chance
        node = await self.api.get("nodes", self.name)
        current = (node.get("spec") or {}).get("podCIDR")
        if current:
            self.pod_cidr = current
            return
        cidr = await self.cidrs.claim(self.name)
        rv = (node.get("metadata") or {}).get("resourceVersion")
        try:
            await self.api.patch(
                "nodes",
                self.name,
                {"metadata": {"resourceVersion": rv}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
            )
        except ApiError as exc:
            if exc.code not in (409, 422):
                raise
            # node IPAM got there first: use its range
            node = await self.api.get("nodes", self.name)
            cidr = (node.get("spec") or {}).get("podCIDR") or ""
            if not cidr:
                raise
        self.pod_cidr = cidr
        log.info("node {} uses pod CIDR {}", self.name, cidr)

    async def ensure_network(self) -> None:
        if not self.pod_cidr or self.network is not None:
            return
        name = network_name(self.pod_cidr)
        try:
            await self.runtime.ensure_network(name, self.pod_cidr)
            self.network = name
            self.network_error = None
        except Exception as exc:
            self.network_error = f"pod network {name} ({self.pod_cidr}): {exc}"
            log.warning("node {}: {}", self.name, self.network_error)

    async def check_runtime(self) -> None:
        try:
            self.runtime_status = await self.runtime.status()
        except Exception as exc:
            self.runtime_status = RuntimeStatus(False, f"container runtime status check failed: {exc}")

    # ------------------------------------------------------------------ status and lease

    def _status(self) -> dict[str, Any]:
        now = _now()
        ok = self.runtime_status.ok and self.network_error is None
        if ok:
            reason, message = "KubeletReady", "kubelet is posting ready status"
        else:
            reason = "KubeletNotReady"
            message = (
                f"container runtime is down: {self.runtime_status.reason}"
                if not self.runtime_status.ok
                else (self.network_error or "")
            )
        conds = [
            condition(
                "MemoryPressure",
                False,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
                self._conditions.get("MemoryPressure"),
            ),
            condition(
                "DiskPressure",
                False,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
                self._conditions.get("DiskPressure"),
            ),
            condition(
                "PIDPressure",
                False,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
                self._conditions.get("PIDPressure"),
            ),
            condition("Ready", ok, reason, message, now, self._conditions.get("Ready")),
        ]
        return {
            "capacity": self.resources.capacity(),
            "allocatable": self.resources.allocatable(),
            "conditions": conds,
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {
                "kubeletEndpoint": {"Port": self.shared.get(STREAMS_PORT_KEY) or KUBELET_PORT}
            },
            "nodeInfo": system_info(self.runtime_version, self.hollow),
        }

    async def update_status(self, force: bool = False) -> None:
        """Write the node status when it changed, or as a heartbeat every STATUS_REPORT_S."""
        # every time: a runtime that worked can break (service gone, storage full, ...)
        await self.check_runtime()
        if self.network is None and self.runtime_status.ok:
            await self.ensure_network()
        stale = time.monotonic() - self._status_written_at >= STATUS_REPORT_S
        inputs = self._status_inputs()
        if not force and not stale and self._status_written is not None and inputs == self._inputs_written:
            return  # what the status is made of did not change: neither did the status
        status = self._status()
        if (
            not force
            and not stale
            and self._status_written is not None
            and _strip_heartbeats(status) == _strip_heartbeats(self._status_written)
        ):
            self._inputs_written = inputs
            return
        try:
            await self.api.patch("nodes", self.name, {"status": status}, subresource="status")
        except ApiError as exc:
            if exc.not_found:  # deleted behind our back: register again
                self._status_written = None
                await self.register()
                return
            raise
        was = self._conditions.get("Ready", {}).get("status")
        self._conditions = {c["type"]: c for c in status["conditions"]}
        if was != self._conditions["Ready"]["status"]:
            ready = self._conditions["Ready"]["status"] == "True"
            self.events.emit(
                self.name,
                self._node_ref(),
                "Normal",
                "NodeReady" if ready else "NodeNotReady",
                f"Node {self.name} status is now: {'NodeReady' if ready else 'NodeNotReady'}",
            )
        self._status_written = status
        self._status_written_at = time.monotonic()
        self._inputs_written = inputs

    def _status_inputs(self) -> tuple[Any, ...]:
        """Everything ``_status`` reads that can change while the agent runs (resources and
        addresses are fixed at start): comparing these is what lets a thousand idle nodes
        check their status every 10 s without building it."""
        rs = self.runtime_status
        return (rs.ok, rs.reason, self.network_error, self.shared.get(STREAMS_PORT_KEY), self.runtime_version)

    def _node_ref(self) -> dict[str, Any]:
        return {
            "kind": "Node",
            "apiVersion": "v1",
            "name": self.name,
            "uid": self.name,
            "namespace": "default",
        }

    async def renew_lease(self) -> None:
        lease = self._lease
        if lease is not None:
            lease["spec"]["renewTime"] = _micro_now()
            lease["spec"]["holderIdentity"] = self.name
            try:
                self._lease = await self.api.update(
                    "leases.coordination.k8s.io", lease, namespace=LEASE_NAMESPACE
                )
                return
            except ApiError as exc:
                if not (exc.conflict or exc.not_found):
                    raise
                self._lease = None
        try:
            current = await self.api.get("leases.coordination.k8s.io", self.name, namespace=LEASE_NAMESPACE)
        except ApiError as exc:
            if not exc.not_found:
                raise
            current = None
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": _micro_now(),
        }
        if current is None:
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
                "spec": spec,
            }
            if self.node_uid:
                body["metadata"]["ownerReferences"] = [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.node_uid}
                ]
            try:
                self._lease = await self.api.create(
                    "leases.coordination.k8s.io", body, namespace=LEASE_NAMESPACE
                )
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                self._lease = await self.api.get(
                    "leases.coordination.k8s.io", self.name, namespace=LEASE_NAMESPACE
                )
        else:
            current["spec"] = {**(current.get("spec") or {}), **spec}
            self._lease = await self.api.update(
                "leases.coordination.k8s.io", current, namespace=LEASE_NAMESPACE
            )

    # ------------------------------------------------------------------ pods

    def pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.pod = pod
                worker.mark_deleted()
            return
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, pod)
            self._new_workers = True
            worker.start()
        else:
            worker.update(pod)

    def forget(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self._seen.pop(uid, None)

    async def adopt(self, pods: list[dict[str, Any]]) -> None:
        """After a (re)start: remove what no pod bound here owns; the pods' workers adopt the
        rest (running containers are found by their labels and left running)."""
        keep = {(p.get("metadata") or {}).get("uid", "") for p in pods}
        try:
            removed = await self.runtime.remove_unowned(keep)
        except ContainerRuntimeError as exc:
            log.warning("node {}: cleaning up unowned pods failed: {}", self.name, exc)
            return
        if removed:
            log.info("node {}: removed {} pod(s) no longer bound here", self.name, len(removed))

    def relist_due(self) -> bool:
        """Whether a relist could find anything: pods here, and (with a runtime that counts its
        changes) a change or a new pod since the last one."""
        if not self.workers:
            return False
        generation = getattr(self.runtime, "generation", None)
        return generation is None or generation != self._relisted_at or self._new_workers

    async def relist(self) -> None:
        """The pod lifecycle event generator: wake the workers of pods whose containers
        changed state since the last look (one runtime call for the whole node)."""
        # a runtime that counts its changes (the simulated one) lets an idle node skip the
        # listing: nothing changed, nothing to wake
        if not self.relist_due():
            return
        generation = getattr(self.runtime, "generation", None)
        self._new_workers = False
        try:
            containers = await self.runtime.list_containers()
        except Exception as exc:
            log.debug("node {}: relist failed: {}", self.name, exc)
            return
        by_pod: dict[str, list[tuple[str, str, int]]] = {}
        for c in containers:
            by_pod.setdefault(c.pod_uid, []).append((c.id, c.state, c.attempt))
        for uid, worker in self.workers.items():
            fingerprint = tuple(sorted(by_pod.get(uid, [])))
            if self._seen.get(uid) != fingerprint:
                # also on first sight: a container may have died before the worker looked
                self._seen[uid] = fingerprint
                worker.wake()
        self._relisted_at = generation
        self._relists += 1
        # (with a change counter this pass runs only after changes: look at the sandboxes too)
        if generation is not None or self._relists % SANDBOX_RELIST_EVERY == 0:
            await self._relist_sandboxes()

    async def _relist_sandboxes(self) -> None:
        """A sandbox whose infra container died took the pod's network with it: its worker
        makes a new one (and restarts the containers in it), as the kubelet does."""
        try:
            sandboxes = {s.uid: s for s in await self.runtime.list_sandboxes()}
        except Exception as exc:
            log.debug("node {}: sandbox relist failed: {}", self.name, exc)
            return
        for uid, worker in list(self.workers.items()):
            current = worker.sandbox
            if current is None or worker.finished:
                continue
            live = sandboxes.get(uid)
            if live is None or live.id != current.id or live.state != "ready":
                worker.sandbox_lost()

    async def stop_workers(self) -> None:
        await asyncio.gather(*(w.stop() for w in list(self.workers.values())), return_exceptions=True)
        self.workers.clear()
