"""One asyncio task per pod (keyed by UID) that drives the runtime towards the pod's spec.

Each pass of ``sync`` looks at what the runtime has (containers found by their labels, so a
restarted agent adopts what runs), starts what is missing (sandbox, then init containers in
order, then app containers), restarts what exited per restartPolicy with CrashLoopBackOff,
acts on probe results, and writes the status subresource when it changed. A pass is
triggered by pod updates from the watch, runtime changes seen by the node's relist, probe
flips, back-off expiry, and a periodic resync (which also refreshes ConfigMap/Secret files).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from kybern.client import ApiError
from kybern.plugins.kubelet.containers import (
    HOST_NETWORK,
    ContainerConfigError,
    build_container_spec,
    port_mappings,
    resolve_env,
)
from kybern.plugins.kubelet.dns import pod_dns_config
from kybern.plugins.kubelet.events import pod_ref
from kybern.plugins.kubelet.podstatus import build_status, latest_two
from kybern.plugins.kubelet.probes import ProbeKind, ProbeWorker, resolve_named_port, run_handler
from kybern.plugins.kubelet.volumes import VolumeError
from kybern.runtime import (
    ContainerNotFoundError,
    ContainerRuntimeError,
    ContainerStatus,
    ImagePullError,
    SandboxSpec,
    SandboxStatus,
)
from loguru import logger

if TYPE_CHECKING:
    from kybern.plugins.kubelet.node import NodeAgent

log = logger.bind(component="kubelet")

RESYNC_S = 60.0
#: pods with ConfigMap/Secret/downward API files re-read them this often
VOLUME_RESYNC_S = 30.0
RETRY_S = 5.0


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 60:
        m, s = divmod(seconds, 60)
        return f"{m}m{s}s" if s else f"{m}m0s"
    return f"{seconds}s"


def pull_policy(ctr: dict[str, Any]) -> str:
    policy = ctr.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = ctr.get("image", "")
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def _has_file_volumes(pod: dict[str, Any]) -> bool:
    kinds = ("configMap", "secret", "downwardAPI", "projected")
    return any(any(k in v for k in kinds) for v in (pod.get("spec") or {}).get("volumes") or [])


_PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def _has_probes(spec: dict[str, Any]) -> bool:
    return any(k in c for c in spec.get("containers") or () for k in _PROBES)


#: the metadata a sync pass depends on (the kubelet's podsDifferSemantically compares these
#: and the spec)
_SYNC_META = ("uid", "labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds")


def _same_but_status(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if old.get("spec") != new.get("spec"):
        return False
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return all(a.get(k) == b.get(k) for k in _SYNC_META)


def _latest_exited(containers: list[ContainerStatus]) -> bool:
    latest: dict[str, ContainerStatus] = {}
    for c in containers:
        if c.name not in latest or c.attempt > latest[c.name].attempt:
            latest[c.name] = c
    return any(c.state == "exited" for c in latest.values())


class StartupTrace:
    """Where the first start of a pod went, step by step (like the kubelet's pod startup
    latency tracker): logged once, when the pod is first reported running. The benchmark
    reads these lines; ``seen`` is wall-clock time so it lines up with the creating client."""

    def __init__(self) -> None:
        self.seen = time.time()
        self.began = self.last = time.monotonic()
        self.steps: dict[str, float] = {}

    def mark(self, step: str) -> None:
        """The time since the previous mark went to ``step`` (repeats add up)."""
        now = time.monotonic()
        self.steps[step] = self.steps.get(step, 0.0) + now - self.last
        self.last = now

    def text(self) -> str:
        steps = " ".join(f"{k}={v:.3f}" for k, v in self.steps.items())
        return f"seen={self.seen:.3f} total={self.last - self.began:.3f} {steps}"


class PodWorker:
    def __init__(self, node: NodeAgent, pod: dict[str, Any]) -> None:
        self.node = node
        self.pod = pod
        meta = pod.get("metadata") or {}
        self.uid: str = meta.get("uid", "")
        self.namespace: str = meta.get("namespace") or "default"
        self.name: str = meta.get("name", "")
        #: the pod object is gone from the API (force-deleted)
        self.deleted = False
        self.finished = False
        self.sandbox: SandboxStatus | None = None
        self.waiting: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next: float | None = None
        self._probes: dict[tuple[str, ProbeKind], ProbeWorker] = {}
        self._probe_results: dict[tuple[str, ProbeKind], bool] = {}
        self._kill: dict[str, str] = {}
        self._written: dict[str, Any] | None = None
        self._volumes_at = 0.0
        self._mounts: dict[str, Any] | None = None
        self._terminal_stopped = False
        #: newest attempt seen per container name (restart counts survive a new sandbox)
        self._attempts: dict[str, int] = {}
        #: container id -> name, for the probe result lookups of the status builder
        self._names: dict[str, str] = {}
        #: a pod no kubelet reported on yet (not one adopted after a restart); hollow nodes
        #: run thousands of pods and nobody reads their traces
        self._trace: StartupTrace | None = (
            None if node.hollow or (pod.get("status") or {}).get("startTime") else StartupTrace()
        )
        # nothing seen yet, and the first pass lists anyway: no relist wake while it waits
        node._seen.setdefault(self.uid, ())

    def _mark(self, step: str) -> None:
        if self._trace is not None:
            self._trace.mark(step)

    def _saw(self, containers: list[ContainerStatus]) -> None:
        """Give the node's relist what this worker just saw of its containers (the relist's
        fingerprint), so the relist wakes it only for changes it has not seen yet, not for the
        containers it started itself: during a burst of pod starts every such extra pass
        costs the runtime a listing."""
        self.node._seen[self.uid] = tuple(sorted((c.id, c.state, c.attempt) for c in containers))

    # ------------------------------------------------------------------ task plumbing

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"pod-{self.namespace}/{self.name}")

    async def stop(self) -> None:
        """Stop working on the pod without touching its containers (agent shutdown)."""
        for worker in self._probes.values():
            worker.stop()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def update(self, pod: dict[str, Any]) -> None:
        old = self.pod
        self.pod = pod
        status = pod.get("status")
        if _same_but_status(old, pod) and (status == self._written or status == old.get("status")):
            # the echo of our own status write (or a change nothing here depends on): the
            # kubelet's pod config hands such updates on as a reconcile, not a sync
            return
        self.wake()

    def mark_deleted(self) -> None:
        self.deleted = True
        self.wake()

    def sandbox_lost(self) -> None:
        """The node's relist saw the sandbox die or vanish."""
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or self._terminal_stopped:
            return
        log.info("sandbox of pod {}/{} is gone; making a new one", self.namespace, self.name)
        self._event("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
        self.sandbox = None
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def _retry_in(self, seconds: float) -> None:
        self._next = seconds if self._next is None else min(self._next, seconds)

    async def _loop(self) -> None:
        while not self.finished:
            self._wake.clear()
            self._next = None
            self._mark("wait")
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, OSError) as exc:
                # the API server or the way to it (busy, restarting, timed out): the message
                # says it all, and a thousand hollow nodes' pods failing at once would spend
                # ~10 ms each on a traceback with its variables
                log.warning("sync of pod {}/{} failed: {}", self.namespace, self.name, exc)
                self._retry_in(RETRY_S)
            except Exception as exc:
                log.opt(exception=exc).warning("sync of pod {}/{} failed: {}", self.namespace, self.name, exc)
                self._retry_in(RETRY_S)
            if self.finished:
                break
            resync = VOLUME_RESYNC_S if _has_file_volumes(self.pod) else RESYNC_S
            delay = min(self._next, resync) if self._next is not None else resync
            # a timer that sets the wake-up event, not wait_for (which makes a task per wait)
            timer = asyncio.get_running_loop().call_later(max(delay, 0.05), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    # ------------------------------------------------------------------ events

    def _event(
        self, type_: str, reason: str, message: str, container: str | None = None, init: bool = False
    ) -> None:
        if self.node.events.full():
            log.debug("event queue full; dropping {} {}", reason, message)
            return
        self.node.events.emit(self.node.name, pod_ref(self.pod, container, init), type_, reason, message)

    # ------------------------------------------------------------------ the sync pass

    async def sync(self) -> None:
        pod = self.pod
        meta = pod.get("metadata") or {}
        if self.deleted or meta.get("deletionTimestamp"):
            await self.terminate()
            return
        rt = self.node.runtime
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            await self._stop_terminal()
            return
        spec = pod.get("spec") or {}
        if await self._past_deadline(spec):
            return
        # volumes (refreshed on resync so ConfigMap/Secret updates reach the files)
        now = time.monotonic()
        if self._mounts is None or now - self._volumes_at >= VOLUME_RESYNC_S - 1:
            try:
                self._mounts = await self.node.volumes.prepare(pod, self.node.allocatable(), self.node.claims)
                self._volumes_at = now
            except (VolumeError, ApiError, OSError) as exc:
                if self._mounts is None:
                    self._event("Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
                    await self._write_status([], sandbox_ready=False)
                    self._retry_in(10)
                    return
                log.debug("refreshing volumes of {}/{}: {}", self.namespace, self.name, exc)
        self._mark("volumes")
        # a pod being started holds one start slot from its sandbox to its last container: a
        # burst then finishes pod by pod, not every pod's containers behind every sandbox
        slots = self.node.start_slots
        held = False
        try:
            containers: list[ContainerStatus] | None = None
            if self.sandbox is None or self.sandbox.state != "ready":
                await slots.acquire()
                held = True
                self._mark("slot")
                asked = datetime.now(UTC)
                try:
                    self.sandbox = await rt.run_pod_sandbox(self._sandbox_spec())
                except ContainerRuntimeError as exc:
                    self._event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
                    await self._write_status([], sandbox_ready=False)
                    self._retry_in(self.node.sandbox_backoff.next((self.uid, "sandbox")))
                    return
                self._mark("sandbox")
                made = self.sandbox.created_at
                if made is not None and made.tzinfo is not None and made >= asked:
                    containers = []  # made just now (not adopted): nothing runs in it yet
            if containers is None:
                containers = await rt.list_containers(self.uid)
                self._mark("list")
            self._saw(containers)
            if self.sandbox is not None and any(
                c.sandbox_id and c.sandbox_id != self.sandbox.id for c in containers if c.state == "running"
            ):
                # the sandbox was re-created behind our back (another agent run): look again
                self.sandbox = None
                self.wake()
                return
            self._count_attempts(containers)
            if not held and self._needs_start(spec, containers):
                await slots.acquire()
                held = True
                self._mark("slot")
            changed = await self._sync_containers(spec, containers)
        finally:
            if held:
                slots.release()
        if changed:
            containers = await rt.list_containers(self.uid)
            self._saw(containers)
            self._count_attempts(containers)  # a new sandbox must know them before any next pass
            self._mark("list")
            if _latest_exited(containers):
                # it ended before this look, so the relist will not see it change: one more
                # pass acts on it (restart, back-off, the next init container)
                self.wake()
        self._sync_probes(spec, containers)
        await self._write_status(containers, sandbox_ready=True)

    def _count_attempts(self, containers: list[ContainerStatus]) -> None:
        for c in containers:
            self._attempts[c.name] = max(self._attempts.get(c.name, -1), c.attempt)

    def _sandbox_spec(self) -> SandboxSpec:
        spec = self.pod.get("spec") or {}
        hostname = spec.get("hostname") or self.name
        dns = pod_dns_config(self.pod, self.node.cluster_dns, self.node.cluster_domain)
        return SandboxSpec(
            uid=self.uid,
            namespace=self.namespace,
            name=self.name,
            hostname=hostname,
            dns=dns,
            port_mappings=port_mappings(self.pod),
            network=HOST_NETWORK if spec.get("hostNetwork") else self.node.network,
        )

    async def _sync_containers(self, spec: dict[str, Any], containers: list[ContainerStatus]) -> bool:
        """Start, restart or kill containers; True when something changed."""
        policy = spec.get("restartPolicy") or "Always"
        changed = False
        # liveness/startup failures: kill, then the restart rules below apply
        for c in containers:
            reason = self._kill.pop(c.id, None)
            if reason and c.state == "running":
                self._event("Normal", "Killing", reason, c.name)
                await self.node.runtime.stop_container(c.id, self._grace())
                changed = True
        if changed:
            containers = await self.node.runtime.list_containers(self.uid)
        for ic in spec.get("initContainers") or []:
            latest, _ = latest_two(containers, ic["name"])
            if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                continue
            if latest is None:
                return await self._start(ic, 0, init=True) or changed
            if latest.state == "created":
                return await self._start_created(ic, latest, init=True) or changed
            if latest.state == "exited" and policy != "Never":
                return await self._restart(ic, latest, init=True) or changed
            return changed  # running (or failed for good): wait
        for ctr in spec.get("containers") or []:
            latest, _ = latest_two(containers, ctr["name"])
            if latest is None:
                changed = await self._start(ctr, 0) or changed
            elif latest.state == "created":
                changed = await self._start_created(ctr, latest) or changed
            elif latest.state == "exited":
                if policy == "Always" or (policy == "OnFailure" and latest.exit_code != 0):
                    changed = await self._restart(ctr, latest) or changed
                else:
                    self.waiting.pop(ctr["name"], None)
            else:
                self.waiting.pop(ctr["name"], None)
        return changed

    @staticmethod
    def _needs_start(spec: dict[str, Any], containers: list[ContainerStatus]) -> bool:
        """Whether this pass may create containers (those passes queue for a start slot)."""
        have = {c.name for c in containers}
        wanted = [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        return any(n not in have for n in wanted) or any(c.state != "running" for c in containers)

    def _grace(self) -> int:
        spec = self.pod.get("spec") or {}
        value = spec.get("terminationGracePeriodSeconds")
        return int(value) if value is not None else 30

    async def _restart(self, ctr: dict[str, Any], latest: ContainerStatus, init: bool = False) -> bool:
        key = (self.uid, ctr["name"])
        finished = latest.finished_at.timestamp() if latest.finished_at else time.time()
        remaining = self.node.crash_backoff.remaining(key, finished)
        if remaining > 0:
            delay = self.node.crash_backoff.delay(key)
            self.waiting[ctr["name"]] = (
                "CrashLoopBackOff",
                f"back-off {_fmt_duration(delay)} restarting failed container={ctr['name']} "
                f"pod={self.name}_{self.namespace}({self.uid})",
            )
            self._event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {ctr['name']} in pod "
                f"{self.name}_{self.namespace}({self.uid})",
                ctr["name"],
                init,
            )
            self._retry_in(remaining + 0.05)
            return False
        self.node.crash_backoff.next(key, finished)
        return await self._start(ctr, latest.attempt + 1, init=init)

    async def _start_created(self, ctr: dict[str, Any], status: ContainerStatus, init: bool = False) -> bool:
        """A container created but never started (the agent stopped in between)."""
        try:
            await self.node.runtime.start_container(status.id)
        except ContainerRuntimeError as exc:
            await self.node.runtime.remove_container(status.id)
            self.waiting[ctr["name"]] = ("RunContainerError", str(exc))
            self._event("Warning", "Failed", f"Error: {exc}", ctr["name"], init)
            self._retry_in(10)
            return True
        self._event("Normal", "Started", f"Started container {ctr['name']}", ctr["name"], init)
        return True

    async def _ensure_image(self, ctr: dict[str, Any], init: bool) -> str | None:
        """Make the image present per imagePullPolicy; None when not available (yet)."""
        image = ctr.get("image", "")
        name = ctr["name"]
        policy = pull_policy(ctr)
        key = (self.uid, "image", image)
        if policy != "Always":
            present = await self.node.image_present(image)
            if present is not None:
                self._event(
                    "Normal", "Pulled", f'Container image "{image}" already present on machine', name, init
                )
                return image
            if policy == "Never":
                message = f'Container image "{image}" is not present with pull policy of Never'
                self.waiting[name] = ("ErrImageNeverPull", message)
                self._event("Warning", "ErrImageNeverPull", message, name, init)
                self._retry_in(30)
                return None
        failed_at = self.node.pull_failures.get(key)
        if failed_at is not None:
            remaining = self.node.pull_backoff.remaining(key, failed_at)
            if remaining > 0:
                message = f'Back-off pulling image "{image}"'
                self.waiting[name] = ("ImagePullBackOff", message)
                self._event("Normal", "BackOff", message, name, init)
                self._retry_in(remaining + 0.05)
                return None
        self._event("Normal", "Pulling", f'Pulling image "{image}"', name, init)
        started = time.monotonic()
        try:
            await self.node.pull_image(self.pod, image, policy)  # type: ignore[arg-type]
        except ImagePullError as exc:
            now = time.time()
            delay = self.node.pull_backoff.next(key, now)
            self.node.pull_failures[key] = now
            self.waiting[name] = (exc.reason, exc.message)
            self._event("Warning", "Failed", f'Failed to pull image "{image}": {exc.message}', name, init)
            self._event("Warning", "Failed", f"Error: {exc.reason}", name, init)
            log.debug("pull of {} failed; next try in {}s", image, delay)
            self._retry_in(1.0)  # the next pass reports ImagePullBackOff until the delay is over
            return None
        self.node.pull_failures.pop(key, None)
        self.node.pull_backoff.forget(key)
        took = time.monotonic() - started
        self._event("Normal", "Pulled", f'Successfully pulled image "{image}" in {took:.3f}s', name, init)
        return image

    async def _start(self, ctr: dict[str, Any], attempt: int, init: bool = False) -> bool:
        rt = self.node.runtime
        name = ctr["name"]
        if self.sandbox is None:
            return False
        # a re-created sandbox starts without the old containers: keep counting restarts
        attempt = max(attempt, self._attempts.get(name, -1) + 1)
        if await self._ensure_image(ctr, init) is None:
            return False
        self._mark("image")
        try:
            # podIP/hostIP before the status says so matter only to fieldRefs
            fields = any("fieldRef" in (v.get("valueFrom") or ()) for v in ctr.get("env") or ())
            env_pod = self.pod_with_ips() if fields else self.pod
            env = await resolve_env(env_pod, ctr, self.node.cache, self.node.allocatable())
            spec = build_container_spec(self.pod, ctr, env, self._mounts or {}, attempt, self._grace())
        except (ContainerConfigError, ApiError) as exc:
            self.waiting[name] = ("CreateContainerConfigError", str(exc))
            self._event("Warning", "Failed", f"Error: {exc}", name, init)
            self._retry_in(10)
            return False
        try:
            cid = await rt.create_container(self.sandbox, spec)
        except ContainerRuntimeError as exc:
            self.waiting[name] = ("CreateContainerError", str(exc))
            self._event("Warning", "Failed", f"Error: {exc}", name, init)
            self._retry_in(10)
            if isinstance(exc, ContainerNotFoundError):
                self.sandbox = None
            return False
        self._event("Normal", "Created", f"Created container {name}", name, init)
        self._mark("create")
        try:
            await rt.start_container(cid)
        except ContainerRuntimeError as exc:
            self.waiting[name] = ("RunContainerError", str(exc))
            self._event("Warning", "Failed", f"Error: {exc}", name, init)
            self._retry_in(10)
            return True
        self.waiting.pop(name, None)
        self._mark("start")
        self._event("Normal", "Started", f"Started container {name}", name, init)
        if attempt >= 2:
            await self._prune(name, attempt)
        post_start = (ctr.get("lifecycle") or {}).get("postStart")
        if post_start:
            ok, message = await run_handler(rt, cid, post_start, self.pod_ip, self._grace() or 30)
            if not ok:
                self._event("Warning", "FailedPostStartHook", message, name, init)
                self._kill[cid] = f"Container {name} failed PostStartHook, will be killed"
                self.wake()
        return True

    async def _prune(self, name: str, attempt: int) -> None:
        """Keep the newest dead container of each name (``logs --previous``, lastState)."""
        for c in await self.node.runtime.list_containers(self.uid):
            if c.name == name and c.attempt < attempt - 1:
                with suppress(ContainerRuntimeError):
                    await self.node.runtime.remove_container(c.id)

    # ------------------------------------------------------------------ probes

    @property
    def pod_ip(self) -> str | None:
        if self.sandbox and self.sandbox.network == HOST_NETWORK:
            return self.node.node_ip  # hostNetwork: the pod's IP is the node's
        return self.sandbox.ip if self.sandbox else None

    def pod_with_ips(self) -> dict[str, Any]:
        """The pod as fieldRefs see it: podIP and hostIP already known before status says so."""
        status = dict(self.pod.get("status") or {})
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        status["hostIP"] = self.node.node_ip
        status["hostIPs"] = [{"ip": self.node.node_ip}]
        return {**self.pod, "status": status}

    def _sync_probes(self, spec: dict[str, Any], containers: list[ContainerStatus]) -> None:
        if not self._probes and not self._probe_results and not _has_probes(spec):
            return  # nothing probed, nothing to stop (most pods)
        running = {c.id: c for c in containers if c.state == "running"}
        by_name = {c.get("name"): c for c in spec.get("containers") or []}
        for key in [k for k in self._probes if k[0] not in running]:
            self._probes.pop(key).stop()
        for key in [k for k in self._probe_results if k[0] not in running]:
            del self._probe_results[key]
        for cid, status in running.items():
            ctr = by_name.get(status.name)
            if ctr is None:
                continue
            startup_pending = bool(ctr.get("startupProbe")) and not self._probe_results.get((cid, "startup"))
            kinds: list[ProbeKind] = ["startup"] if startup_pending else ["liveness", "readiness"]
            for kind in kinds:
                probe = ctr.get(f"{kind}Probe")
                if not probe or (cid, kind) in self._probes:
                    continue
                worker = ProbeWorker(
                    kind,
                    resolve_named_port(probe, ctr),
                    self.node.runtime,
                    cid,
                    lambda: self.pod_ip,
                    self._probe_callback(cid, status.name),
                )
                self._probes[(cid, kind)] = worker
                worker.start()

    def _probe_callback(self, cid: str, name: str) -> Any:
        def on_change(kind: ProbeKind, ok: bool, message: str, flipped: bool) -> None:
            if not ok:
                self._event("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}", name)
            if not flipped:
                return
            self._probe_results[(cid, kind)] = ok
            if not ok and kind in ("liveness", "startup"):
                self._kill[cid] = f"Container {name} failed {kind} probe, will be restarted"
            self.wake()

        return on_change

    def _ready(self, cid: str) -> bool:
        ctr = self._spec_of(cid)
        if ctr is not None and not ctr.get("readinessProbe"):
            return True
        return self._probe_results.get((cid, "readiness"), False)

    def _started(self, cid: str) -> bool:
        ctr = self._spec_of(cid)
        if ctr is not None and not ctr.get("startupProbe"):
            return True
        return self._probe_results.get((cid, "startup"), False)

    def _spec_of(self, cid: str) -> dict[str, Any] | None:
        name = self._names.get(cid)
        for c in (self.pod.get("spec") or {}).get("containers") or []:
            if c.get("name") == name:
                return c
        return None

    # ------------------------------------------------------------------ status

    async def _write_status(
        self, containers: list[ContainerStatus], sandbox_ready: bool, failed: tuple[str, str] | None = None
    ) -> None:
        """``failed`` = (reason, message) ends the pod as Failed whatever its containers say."""
        self._names = {c.id: c.name for c in containers}
        status = build_status(
            self.pod,
            containers,
            scheme=self.node.runtime_scheme,
            pod_ip=self.pod_ip if sandbox_ready else None,
            host_ip=self.node.node_ip,
            sandbox_ready=sandbox_ready,
            waiting=self.waiting,
            readiness=self._ready,
            started=self._started,
        )
        if failed is not None:
            status.update(phase="Failed", reason=failed[0], message=failed[1])
            for cond in status["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady") and cond["status"] == "False":
                    cond["reason"] = "PodFailed"
                    cond.pop("message", None)
        old = self.pod.get("status") or {}
        if status == old or status == self._written:
            return
        patch: dict[str, Any] = {k: None for k in old if k not in status and k not in ("nominatedNodeName",)}
        patch.update(status)
        # known before the answer: the watch may bring the write's echo first (see update)
        written, self._written = self._written, status
        try:
            updated = await self.node.api.patch(
                "pods", self.name, {"status": patch}, namespace=self.namespace, subresource="status"
            )
        except BaseException as exc:
            self._written = written
            if isinstance(exc, ApiError) and exc.not_found:
                return
            raise
        if (updated.get("metadata") or {}).get("uid") == self.uid:
            self.pod = {**self.pod, "status": updated.get("status") or status}
        if status.get("phase") in ("Succeeded", "Failed"):
            self.wake()  # the next pass stops the sandbox (the write's echo no longer wakes us)
        if self._trace is not None:
            self._trace.mark("status")
            if status.get("phase") != "Pending":
                log.info(
                    "Observed pod startup duration pod={}/{} {}",
                    self.namespace,
                    self.name,
                    self._trace.text(),
                )
                self._trace = None

    # ------------------------------------------------------------------ endings

    async def _past_deadline(self, spec: dict[str, Any]) -> bool:
        """activeDeadlineSeconds: past it the kubelet kills the pod and fails it
        (DeadlineExceeded); before it, wake up when it comes."""
        deadline = spec.get("activeDeadlineSeconds")
        started = (self.pod.get("status") or {}).get("startTime")
        if not deadline or not started:
            return False
        begun = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        remaining = begun + int(deadline) - time.time()
        if remaining > 0:
            self._retry_in(remaining + 0.05)
            return False
        message = "Pod was active on the node longer than the specified deadline"
        self._event("Normal", "DeadlineExceeded", message)
        rt = self.node.runtime
        for worker in self._probes.values():
            worker.stop()
        self._probes.clear()
        containers = await rt.list_containers(self.uid)
        await asyncio.gather(
            *(rt.stop_container(c.id, self._grace()) for c in containers if c.state == "running"),
            return_exceptions=True,
        )
        self.waiting.clear()
        await self._write_status(await rt.list_containers(self.uid), False, ("DeadlineExceeded", message))
        return True

    async def _stop_terminal(self) -> None:
        """Succeeded/Failed: nothing restarts; stop the sandbox once to free its address."""
        if self._terminal_stopped:
            return
        for worker in self._probes.values():
            worker.stop()
        self._probes.clear()
        with suppress(ContainerRuntimeError):
            await self.node.runtime.stop_pod_sandbox(self.uid, 0)
        self._terminal_stopped = True

    async def terminate(self) -> None:
        """Graceful deletion: preStop hooks, SIGTERM, grace period, SIGKILL, remove the
        sandbox and the volumes, then complete the deletion of the Pod object."""
        rt = self.node.runtime
        meta = self.pod.get("metadata") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        grace = self._grace() if grace is None else int(grace)
        if self.deleted:
            grace = min(grace, 2)  # force-deleted: the API no longer waits for us
        for worker in self._probes.values():
            worker.stop()
        self._probes.clear()
        deadline = time.monotonic() + grace
        try:
            containers = await rt.list_containers(self.uid)
        except ContainerRuntimeError:
            containers = []
        specs = {
            c.get("name"): c
            for c in ((self.pod.get("spec") or {}).get("containers") or [])
            + ((self.pod.get("spec") or {}).get("initContainers") or [])
        }

        async def stop_one(c: ContainerStatus) -> None:
            self._event("Normal", "Killing", f"Stopping container {c.name}", c.name)
            pre_stop = ((specs.get(c.name) or {}).get("lifecycle") or {}).get("preStop")
            if pre_stop and grace > 0:
                with suppress(TimeoutError):
                    ok, message = await asyncio.wait_for(
                        run_handler(rt, c.id, pre_stop, self.pod_ip, grace), grace
                    )
                    if not ok:
                        self._event("Warning", "FailedPreStopHook", message, c.name)
            remaining = max(int(deadline - time.monotonic()), 0)
            with suppress(ContainerRuntimeError):
                await rt.stop_container(c.id, remaining)

        await asyncio.gather(*(stop_one(c) for c in containers if c.state == "running"))
        with suppress(ContainerRuntimeError):
            await rt.remove_pod_sandbox(self.uid)
        await asyncio.to_thread(self.node.volumes.cleanup, self.uid)
        self.node.crash_backoff.forget_prefix(self.uid)
        if not self.deleted:
            try:
                await self.node.api.delete(
                    "pods",
                    self.name,
                    namespace=self.namespace,
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
            except ApiError as exc:
                if not (exc.not_found or exc.code == 409):
                    raise
        self.finished = True
        self.node.forget(self.uid)
