"""In-memory implementation of :class:`kybern.runtime.ContainerRuntime`.

Cheap by design (a dict per node, no tasks, no I/O): 1000 nodes x 10 pods is ~10,000 small
records. Containers run until stopped; a stopped container exits 143 (SIGTERM), like a real
process that honours the signal. Images are "present" once pulled; ``Never`` on an image not
pulled yet fails as the kubelet would report it.
"""

from __future__ import annotations

import ipaddress
import itertools
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from kybern.runtime import (
    LABEL_CONTAINER_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerNotFoundError,
    ContainerSpec,
    ContainerStartError,
    ContainerStats,
    ContainerStatus,
    ImagePullError,
    ImageRef,
    PullPolicy,
    RuntimeStatus,
    RuntimeVersion,
    SandboxSpec,
    SandboxStatus,
)

VERSION = "0.1.0"
NO_LOGS = b"simulated container: no logs\n"
NO_EXEC = b"simulated container: no processes to exec into\n"
#: exit code exec reports: "command not found", the honest answer when nothing can run
EXEC_EXIT_CODE = 127
_SIGTERM_EXIT = 143

_runtime_ids = itertools.count(1)
_T = TypeVar("_T")


def _now() -> datetime:
    return datetime.now(UTC)


def _replace(record: _T, **changes: Any) -> _T:
    """A status dataclass with ``changes`` (what dataclasses.replace makes, at a fifth of the
    cost). Records are never changed in place once handed out: a change stores a new one, so
    listings hand out the stored records themselves, each a snapshot of the moment (as the
    Podman runtime's fresh objects are), and the node's relist, which lists every container of
    the node every 2 s while pods start, copies nothing."""
    clone = object.__new__(type(record))
    clone.__dict__.update(record.__dict__)
    clone.__dict__.update(changes)
    return clone


def _default_cidr(node_name: str) -> ipaddress.IPv4Network:
    """A /24 in 10.244.0.0/16... per node name, stable across restarts (no Node object needed);
    the real pod CIDR, when the kubelet knows it, should be passed instead."""
    index = zlib.crc32(node_name.encode()) % (1 << 16)
    return ipaddress.IPv4Network((ipaddress.IPv4Address("10.128.0.0") + (index << 8), 24))


@dataclass
class _Sandbox:
    status: SandboxStatus
    containers: list[str] = field(default_factory=list)


@dataclass
class _Container:
    status: ContainerStatus
    spec: ContainerSpec


class _ExecSession:
    """An exec into nothing: one honest line on stderr, then exit 127."""

    def __init__(self, tty: bool) -> None:
        self._tty = tty

    async def output(self) -> AsyncIterator[tuple[Literal["stdout", "stderr"], bytes]]:
        yield ("stdout" if self._tty else "stderr", NO_EXEC)

    async def write(self, data: bytes) -> None:
        return None

    async def close_stdin(self) -> None:
        return None

    async def resize(self, width: int, height: int) -> None:
        return None

    async def wait(self) -> int:
        return EXEC_EXIT_CODE

    async def close(self) -> None:
        return None


class SimulatedRuntime:
    """One hollow node's runtime."""

    def __init__(self, node_name: str = "hollow", pod_cidr: str | None = None) -> None:
        self.node_name = node_name
        self._instance = next(_runtime_ids)
        self._network = (
            ipaddress.IPv4Network(pod_cidr, strict=False) if pod_cidr else _default_cidr(node_name)
        )
        self._hosts = self._network.hosts()
        next(self._hosts, None)  # the first address is the bridge's (gateway), as on a real node
        self._free_ips: list[str] = []
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._images: dict[str, ImageRef] = {}
        self._ids = itertools.count(1)
        #: bumped by every change to a sandbox or container: the kubelet's relist looks at the
        #: listings only when it moved (a thousand idle hollow nodes then cost no copying)
        self.generation = 0

    def _new_id(self, kind: str) -> str:
        return f"sim{self._instance}-{kind}{next(self._ids)}"

    def _allocate_ip(self) -> str:
        if self._free_ips:
            return self._free_ips.pop()
        try:
            return str(next(self._hosts))
        except StopIteration:
            raise ContainerStartError(
                f"pod CIDR {self._network} of node {self.node_name} is exhausted"
            ) from None

    # --- identity ------------------------------------------------------------------------------

    async def version(self) -> RuntimeVersion:
        return RuntimeVersion("simulated", VERSION, "v1")

    async def status(self) -> RuntimeStatus:
        return RuntimeStatus(True)

    # --- images --------------------------------------------------------------------------------

    async def pull_image(
        self, image: str, auth: dict[str, str] | None = None, policy: PullPolicy = "IfNotPresent"
    ) -> ImageRef:
        present = self._images.get(image)
        if present is not None:
            return present  # pulled before (Always too: a registry would answer the same digest)
        if not image or len(image.split()) != 1 or image.strip() != image:
            raise ImagePullError("InvalidImageName", f'Failed to apply default image tag "{image}"')
        if policy == "Never":
            raise ImagePullError(
                "ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never'
            )
        digest = f"sha256:{zlib.crc32(image.encode()):08x}" + "0" * 56
        ref = ImageRef(image=image, id=digest, digest=digest, size=0)
        self._images[image] = ref
        return ref

    async def image_present(self, image: str) -> ImageRef | None:
        return self._images.get(image)

    async def ensure_network(self, name: str, subnet: str, gateway: str | None = None) -> None:
        network = ipaddress.IPv4Network(subnet, strict=False)
        if network != self._network and not self._sandboxes:
            self._network = network
            self._hosts = network.hosts()
            first = next(self._hosts, None)  # the gateway keeps the first address
            if gateway and first is not None and gateway != str(first):
                self._hosts = (h for h in network.hosts() if str(h) != gateway)
            self._free_ips.clear()

    # --- sandboxes -----------------------------------------------------------------------------

    async def run_pod_sandbox(self, spec: SandboxSpec) -> SandboxStatus:
        existing = self._sandboxes.get(spec.uid)
        if existing is not None and existing.status.state == "ready":
            return existing.status
        if existing is not None:
            await self.remove_pod_sandbox(spec.uid)
        labels = {
            **spec.labels,
            LABEL_POD_UID: spec.uid,
            LABEL_POD_NAMESPACE: spec.namespace,
            LABEL_POD_NAME: spec.name,
        }
        status = SandboxStatus(
            id=self._new_id("sandbox"),
            uid=spec.uid,
            namespace=spec.namespace,
            name=spec.name,
            state="ready",
            ip=self._allocate_ip(),
            network=spec.network or "simulated",
            created_at=_now(),
            labels=labels,
            attempt=spec.attempt,
        )
        self._sandboxes[spec.uid] = _Sandbox(status)
        self.generation += 1
        return status

    async def stop_pod_sandbox(self, uid: str, timeout_s: int = 10) -> None:
        sandbox = self._sandboxes.get(uid)
        if sandbox is None:
            return
        for cid in sandbox.containers:
            await self.stop_container(cid, timeout_s)
        sandbox.status = _replace(sandbox.status, state="notready")
        self.generation += 1

    async def remove_pod_sandbox(self, uid: str) -> None:
        sandbox = self._sandboxes.pop(uid, None)
        if sandbox is None:
            return
        self.generation += 1
        for cid in sandbox.containers:
            self._containers.pop(cid, None)
        if sandbox.status.ip:
            self._free_ips.append(sandbox.status.ip)

    async def list_sandboxes(self) -> list[SandboxStatus]:
        return [s.status for s in self._sandboxes.values()]

    async def remove_unowned(self, keep_uids: set[str]) -> list[str]:
        gone = [uid for uid in self._sandboxes if uid not in keep_uids]
        for uid in gone:
            await self.remove_pod_sandbox(uid)
        return gone

    # --- containers ----------------------------------------------------------------------------

    async def create_container(self, sandbox: SandboxStatus, spec: ContainerSpec) -> str:
        box = self._sandboxes.get(sandbox.uid)
        if box is None:
            raise ContainerNotFoundError(f"sandbox of pod {sandbox.namespace}/{sandbox.name} does not exist")
        cid = self._new_id("ctr")
        image = self._images.get(spec.image)
        labels = {
            **spec.labels,
            LABEL_POD_UID: sandbox.uid,
            LABEL_POD_NAMESPACE: sandbox.namespace,
            LABEL_POD_NAME: sandbox.name,
            LABEL_CONTAINER_NAME: spec.name,
            LABEL_CONTAINER_ATTEMPT: str(spec.attempt),
        }
        status = ContainerStatus(
            id=cid,
            name=spec.name,
            sandbox_id=box.status.id,
            pod_uid=sandbox.uid,
            namespace=sandbox.namespace,
            pod_name=sandbox.name,
            state="created",
            image=spec.image,
            image_id=image.id if image else "",
            created_at=_now(),
            attempt=spec.attempt,
            labels=labels,
        )
        self._containers[cid] = _Container(status, spec)
        box.containers.append(cid)
        self.generation += 1
        return cid

    def _get(self, cid: str) -> _Container:
        container = self._containers.get(cid)
        if container is None:
            raise ContainerNotFoundError(f"container {cid} does not exist")
        return container

    async def start_container(self, id: str) -> None:
        container = self._get(id)
        if container.status.state == "running":
            return
        if container.status.state == "exited":
            raise ContainerStartError(f"container {id} has exited; create a new one to restart")
        container.status = _replace(container.status, state="running", started_at=_now())
        self.generation += 1

    async def stop_container(self, id: str, timeout_s: int = 30) -> None:
        container = self._get(id)
        self.generation += 1
        if container.status.state != "running":
            if container.status.state == "created":
                container.status = _replace(container.status, state="exited", exit_code=0, finished_at=_now())
            return
        container.status = _replace(
            container.status, state="exited", exit_code=_SIGTERM_EXIT, reason="Error", finished_at=_now()
        )

    async def remove_container(self, id: str) -> None:
        container = self._containers.pop(id, None)
        if container is None:
            return
        self.generation += 1
        box = self._sandboxes.get(container.status.pod_uid)
        if box is not None and id in box.containers:
            box.containers.remove(id)

    async def list_containers(self, sandbox_uid: str | None = None) -> list[ContainerStatus]:
        if sandbox_uid is not None:
            box = self._sandboxes.get(sandbox_uid)
            ids = box.containers if box else []
            containers = self._containers
            return [containers[c].status for c in ids if c in containers]
        return [c.status for c in self._containers.values()]

    async def container_logs(
        self,
        id: str,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        container = self._get(id)
        if tail == 0:
            return
        line = NO_LOGS
        if timestamps:
            started = container.status.started_at or container.status.created_at or _now()
            line = started.strftime("%Y-%m-%dT%H:%M:%S.%f000Z ").encode() + line
        yield line

    async def exec(self, id: str, cmd: list[str], stdin: bool = False, tty: bool = False) -> _ExecSession:
        self._get(id)
        return _ExecSession(tty)

    async def exec_sync(self, id: str, cmd: list[str], timeout: float | None = None) -> tuple[int, bytes]:
        self._get(id)
        return EXEC_EXIT_CODE, NO_EXEC

    async def stats(self, id: str) -> ContainerStats:
        container = self._get(id)
        running = container.status.state == "running"
        started = container.status.started_at or _now()
        elapsed = (_now() - started).total_seconds() if running else 0.0
        limit = container.spec.resources.memory_limit_bytes or 0
        return ContainerStats(
            id=id,
            timestamp=_now(),
            cpu_usage_nanos=int(elapsed * 1_000_000),  # a steady 1 millicore
            memory_usage_bytes=1 << 20 if running else 0,
            memory_limit_bytes=limit,
        )

    async def close(self) -> None:
        return None
