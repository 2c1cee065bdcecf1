"""The kubelet component: node agents for one node (or N hollow nodes) in this process.

Everything shared is made once per process: one API client, one pod watch for all nodes
(``spec.nodeName=NODE`` for one node, every scheduled pod for several, dispatched by node
name), one ConfigMap/Secret cache, one event recorder, and three periodic loops (lease
renewal, node status, runtime relist) that visit every node in batches. That is what lets
a thousand hollow nodes run in one process without a task or thread per node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import os
import random
import ssl
import time
from contextlib import suppress
from typing import Any

import aiohttp
from kybern.client import ApiClient, ApiError
from kybern.components import ConfigurationError, RunContext
from kybern.plugins.kubelet.dns import DEFAULT_CLUSTER_DNS, DEFAULT_CLUSTER_DOMAIN
from kybern.plugins.kubelet.events import EventRecorder
from kybern.plugins.kubelet.localpath import ClaimResolver, ensure_storage_class
from kybern.plugins.kubelet.node import CidrAllocator, NodeAgent
from kybern.plugins.kubelet.nodeinfo import DEFAULT_CLUSTER_CIDR, DEFAULT_MAX_PODS, NodeResources, host_ip
from kybern.plugins.kubelet.objcache import ObjectCache
from kybern.runtime import ContainerRuntime, ContainerStatus
from loguru import logger

log = logger.bind(component="kubelet")

LEASE_RENEW_S = 10.0
STATUS_CHECK_S = 10.0
RELIST_S = 2.0
#: pod CIDRs of many (hollow) nodes: 32768 /24s
HOLLOW_CLUSTER_CIDR = "10.128.0.0/9"
#: concurrent API writes of the batched loops
BATCH = 32
#: the lease renewal's jitter factor (the kubelet's lease controller: wait.JitterUntil with 0.04)
LEASE_JITTER = 0.04
#: a periodic loop wakes at most this often and runs every node then due: a thousand nodes
#: spread over a 10 s period cost 20 wake-ups a second, not a thousand
TICK_S = 0.05
#: overrides the node's number of pods starting at once (see NodeAgent.start_slots); the
#: start-up benchmark measures a few values this way
START_SLOTS_ENV = "KYBERN_KUBELET_START_SLOTS"


def _reaped(running: set[asyncio.Future[Any]]) -> Any:
    """A done callback that forgets a batch and takes its outcome: a batch cancelled at stop
    ends with a CancelledError nobody awaits, which asyncio would log as an error."""

    def done(future: asyncio.Future[Any]) -> None:
        running.discard(future)
        if not future.cancelled():
            future.exception()

    return done


class Kubelet:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        extra = ctx.config.extra
        self.runtime_name: str = extra.get("runtime") or "podman"
        self.node_count: int = int(extra.get("nodes") or 1)
        self.prefix: str | None = extra.get("node_name_prefix") or None
        self.cluster_cidr: str = extra.get("cluster_cidr") or DEFAULT_CLUSTER_CIDR
        self.nodes: dict[str, NodeAgent] = {}
        self.api: ApiClient | None = None
        self.events: EventRecorder | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runtimes: list[ContainerRuntime] = []
        self._pods_rv: str | None = None

    # ------------------------------------------------------------------ start/stop

    def _node_names(self) -> list[str]:
        if self.node_count <= 1 and not self.prefix:
            return [self.ctx.config.node_name]
        prefix = self.prefix or f"{self.ctx.config.node_name}-"
        return [f"{prefix}{i}" for i in range(self.node_count)]

    def _runtime_factory(self) -> Any:
        for batch in self.ctx.plugins.hook.kybern_container_runtimes():
            for spec in batch or []:
                if spec.name == self.runtime_name:
                    return spec.factory
        known = sorted(s.name for b in self.ctx.plugins.hook.kybern_container_runtimes() for s in b or [])
        raise ConfigurationError(
            f"unknown container runtime {self.runtime_name!r} (--runtime); "
            f"installed: {', '.join(known) or 'none'}"
        )

    def _resources(self, hollow: bool) -> NodeResources:
        extra = self.ctx.config.extra
        pods = int(extra.get("pods") or DEFAULT_MAX_PODS)
        if hollow or extra.get("cpu") or extra.get("memory"):
            host = NodeResources.from_host(self.ctx.config.data_dir, pods)
            return NodeResources.hollow(
                extra.get("cpu") or host.cpu, extra.get("memory") or host.memory, pods
            )
        return NodeResources.from_host(self.ctx.config.data_dir, pods)

    async def start(self) -> None:
        if self.ctx.api is None:
            raise ConfigurationError("the kubelet needs an API server to talk to")
        factory = self._runtime_factory()
        server_ca = self.ctx.config.extra.get("server_ca")
        if server_ca and not self.ctx.shared.get("ca_file"):
            self.ctx.shared["ca_file"] = str(server_ca)
        self.api = self.ctx.api("kubelet")
        cache = ObjectCache(self.api)
        self.events = EventRecorder(self.api)
        self.events.start()
        names = self._node_names()
        hollow = len(names) > 1 or self.runtime_name != "podman"
        ip = host_ip()
        config = self.ctx.config
        cluster_cidr = self.cluster_cidr
        if cluster_cidr == DEFAULT_CLUSTER_CIDR and len(names) > 200:
            cluster_cidr = HOLLOW_CLUSTER_CIDR  # a /16 holds only 256 node ranges
        cidrs = CidrAllocator(self.api, cluster_cidr)
        for name in names:
            node_config = (
                config
                if len(names) == 1
                else dataclasses.replace(config, node_name=name, data_dir=config.data_dir / "nodes" / name)
            )
            node_ctx = RunContext(
                config=node_config,
                plugins=self.ctx.plugins,
                store=self.ctx.store,
                api=self.ctx.api,
                shared=self.ctx.shared,
                stopping=self.ctx.stopping,
            )
            runtime = factory(node_ctx)
            self._runtimes.append(runtime)
            self.nodes[name] = NodeAgent(
                name,
                runtime,
                self.api,
                self.events,
                cache,
                node_config.data_dir,
                self._resources(hollow),
                ip,
                control_plane=config.role == "server" and len(names) == 1,
                hollow=hollow,
                cidrs=cidrs,
                claims=ClaimResolver(self.api, node_config.data_dir, name),
                shared=self.ctx.shared,
                cluster_dns=config.extra.get("cluster_dns") or DEFAULT_CLUSTER_DNS,
                cluster_domain=config.extra.get("cluster_domain") or DEFAULT_CLUSTER_DOMAIN,
            )
            if os.environ.get(START_SLOTS_ENV):
                self.nodes[name].start_slots = asyncio.Semaphore(int(os.environ[START_SLOTS_ENV]))
        if config.role == "server":
            await ensure_storage_class(self.api)
        try:
            await self.api.list("namespaces", limit=1)
        except (aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError):
            raise ConfigurationError(
                f"cannot verify the certificate of {self.ctx.config.server_url}: pass --server-ca with "
                "the server's DATA_DIR/tls/ca.crt"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConfigurationError(f"cannot reach the API server: {exc}") from None
        await self._for_all(lambda n: n.register(), "registering")
        pods = await self._list_pods()
        by_node: dict[str, list[dict[str, Any]]] = {n: [] for n in self.nodes}
        for pod in pods:
            by_node.setdefault((pod.get("spec") or {}).get("nodeName", ""), []).append(pod)
        await self._for_all(lambda n: n.adopt(by_node.get(n.name, [])), "adopting")
        for pod in pods:
            self._dispatch("ADDED", pod)
        self.ctx.shared["kubelet"] = self
        self._tasks = [
            asyncio.create_task(self._watch_pods(), name="kubelet-pod-watch"),
            asyncio.create_task(
                self._every(LEASE_RENEW_S, lambda n: n.renew_lease(), "renewing lease", jitter=LEASE_JITTER),
                name="kubelet-leases",
            ),
            asyncio.create_task(
                self._every(STATUS_CHECK_S, lambda n: n.update_status(), "updating status"),
                name="kubelet-node-status",
            ),
            asyncio.create_task(
                self._every(
                    RELIST_S, lambda n: n.relist(), "relisting", quiet=True, needed=lambda n: n.relist_due()
                ),
                name="kubelet-relist",
            ),
        ]
        log.info("kubelet running {} node(s) on runtime {}", len(self.nodes), self.runtime_name)

    async def stop(self) -> None:
        """Stop working; containers keep running (a restarted agent adopts them)."""
        self.ctx.shared.pop("kubelet", None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        for node in self.nodes.values():
            await node.stop_workers()
        if self.events is not None:
            await self.events.stop()
        for runtime in self._runtimes:
            with suppress(Exception):
                await runtime.close()
        if self.api is not None:
            await self.api.close()

    # ------------------------------------------------------------------ batched loops

    @staticmethod
    async def _guarded(fn: Any, node: NodeAgent, what: str, quiet: bool) -> None:
        """One node's turn: its failure is logged, never the other nodes' problem."""
        try:
            await fn(node)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            (log.debug if quiet else log.warning)("node {}: {} failed: {}", node.name, what, exc)

    async def _for_all(self, fn: Any, what: str, quiet: bool = False) -> None:
        sem = asyncio.Semaphore(BATCH)

        async def one(node: NodeAgent) -> None:
            async with sem:
                await self._guarded(fn, node, what, quiet)

        await asyncio.gather(*(one(n) for n in list(self.nodes.values())))

    async def _every(
        self,
        period: float,
        fn: Any,
        what: str,
        quiet: bool = False,
        jitter: float = 0.0,
        needed: Any = None,
    ) -> None:
        """Run ``fn`` for every node once a period, each node on its own schedule: the first
        runs are spread evenly over one period and each next one is due a period (stretched
        by up to ``jitter`` of it, as wait.JitterUntil does) after the last one finished.
        A thousand hollow nodes then renew their leases ~100 a second, as a thousand real
        kubelets started at different times would, not in one burst every 10 s that holds up
        the API server's other requests. ``needed(node)`` False skips a node's turn without
        making a task for it (an idle node's relist)."""
        nodes = list(self.nodes.values())
        start = time.monotonic()
        due = [(start + period * i / len(nodes), i) for i in range(len(nodes))]
        heapq.heapify(due)
        # BATCH runs at once; a slow one (a busy server) holds up no other node's turn
        slots = asyncio.Semaphore(BATCH)
        running: set[asyncio.Future[Any]] = set()

        async def one(index: int) -> None:
            node = nodes[index]
            async with slots:
                await self._guarded(fn, node, what, quiet)
            finish = time.monotonic()
            heapq.heappush(due, (finish + period * (1.0 + jitter * random.random()), index))

        try:
            while True:
                wait = due[0][0] - time.monotonic() if due else TICK_S
                if wait > 0:
                    await asyncio.sleep(max(wait, TICK_S))
                now = time.monotonic()
                batch: list[int] = []
                while due and due[0][0] <= now + TICK_S:
                    index = heapq.heappop(due)[1]
                    if needed is None or needed(nodes[index]):
                        batch.append(index)
                    else:
                        heapq.heappush(due, (now + period * (1.0 + jitter * random.random()), index))
                if batch:
                    # one node's runs never overlap: it is due again only after its run ended
                    future = asyncio.gather(*(one(i) for i in batch))
                    running.add(future)
                    future.add_done_callback(_reaped(running))
        finally:
            for future in list(running):
                future.cancel()

    # ------------------------------------------------------------------ the pod watch

    def _field_selector(self) -> str:
        if len(self.nodes) == 1:
            return f"spec.nodeName={next(iter(self.nodes))}"
        return "spec.nodeName!="

    async def _list_pods(self) -> list[dict[str, Any]]:
        assert self.api is not None
        listing = await self.api.list("pods", field_selector=self._field_selector())
        self._pods_rv = (listing.get("metadata") or {}).get("resourceVersion")
        return [p for p in listing.get("items") or [] if (p.get("spec") or {}).get("nodeName") in self.nodes]

    def _dispatch(self, kind: str, pod: dict[str, Any]) -> None:
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName", ""))
        if node is not None:
            node.pod_event(kind, pod)

    async def _relist_pods(self) -> None:
        pods = await self._list_pods()
        present = {(p.get("metadata") or {}).get("uid") for p in pods}
        for node in self.nodes.values():
            for uid, worker in list(node.workers.items()):
                if uid not in present:
                    node.pod_event("DELETED", worker.pod)
        for pod in pods:
            self._dispatch("MODIFIED", pod)

    async def _watch_pods(self) -> None:
        assert self.api is not None
        while True:
            try:
                async for event in self.api.watch(
                    "pods",
                    resource_version=self._pods_rv,
                    field_selector=self._field_selector(),
                    timeout_seconds=300,
                ):
                    obj = event.object
                    if event.type == "ERROR":
                        if obj.get("code") == 410:
                            await self._relist_pods()
                        else:
                            log.warning("pod watch error: {}", obj.get("message"))
                            await asyncio.sleep(1)
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self._pods_rv = rv
                    if event.type != "BOOKMARK":
                        self._dispatch(event.type, obj)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.code == 410:
                    with suppress(Exception):
                        await self._relist_pods()
                else:
                    log.warning("pod watch failed: {}", exc)
                    await asyncio.sleep(1)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.debug("pod watch interrupted: {}", exc)
                await asyncio.sleep(1)
                with suppress(Exception):
                    await self._relist_pods()

    # ------------------------------------------------------------------ for the streams (logs/exec)

    async def find_container(
        self, namespace: str, pod: str, container: str | None = None, previous: bool = False
    ) -> tuple[ContainerRuntime, ContainerStatus]:
        """The runtime and container that ``kubectl logs``/``exec`` mean: the pod's named
        container (the first one if not named), its newest attempt, or with ``previous`` the
        one before. Raises LookupError with kubectl's wording when there is none."""
        for node in self.nodes.values():
            for worker in node.workers.values():
                if worker.namespace != namespace or worker.name != pod:
                    continue
                spec = worker.pod.get("spec") or {}
                names = [c.get("name") for c in spec.get("containers") or []]
                init_names = [c.get("name") for c in spec.get("initContainers") or []]
                name = container or (names[0] if names else None)
                if name not in names + init_names:
                    raise LookupError(f"container {name} is not valid for pod {pod}")
                found = sorted(
                    (c for c in await node.runtime.list_containers(worker.uid) if c.name == name),
                    key=lambda c: c.attempt,
                    reverse=True,
                )
                index = 1 if previous else 0
                if len(found) <= index:
                    if previous:
                        raise LookupError(f'previous terminated container "{name}" in pod "{pod}" not found')
                    raise LookupError(f'container "{name}" in pod "{pod}" is waiting to start')
                return node.runtime, found[index]
        raise LookupError(f'pods "{pod}" not found on this node')

    def container_spec(self, namespace: str, pod: str, container: str) -> dict[str, Any] | None:
        """The named container of a pod this process runs, as its spec says (``kubectl
        attach`` needs stdin/stdinOnce/tty from it)."""
        for node in self.nodes.values():
            for worker in node.workers.values():
                if worker.namespace == namespace and worker.name == pod:
                    spec = worker.pod.get("spec") or {}
                    for ctr in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                        if ctr.get("name") == container:
                            return dict(ctr)
        return None
