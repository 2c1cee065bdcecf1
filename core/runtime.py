"""The container runtime interface a node agent (the kubelet role) drives.

It is shaped like Kubernetes' CRI (sandboxes that own the network namespace, containers that
join them, images, logs, exec, stats) but Pythonic: async methods because the kubelet is an
asyncio program, dataclasses instead of protobufs, and exceptions instead of status codes.

A runtime plugin implements :class:`ContainerRuntime` and offers it through the
``kybern_container_runtimes`` hook as a :class:`kybern.hooktypes.RuntimeSpec`. Everything a
runtime creates carries the ``io.kybern.*`` labels below, so a restarted agent can rebuild its
view of the node from the runtime alone (adoption) and remove what no pod owns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

#: labels on every sandbox and container, so state survives an agent restart
LABEL_POD_UID = "io.kybern.pod.uid"
LABEL_POD_NAMESPACE = "io.kybern.pod.namespace"
LABEL_POD_NAME = "io.kybern.pod.name"
LABEL_CONTAINER_NAME = "io.kybern.container.name"
#: restart count of the container (CRI's "attempt")
LABEL_CONTAINER_ATTEMPT = "io.kybern.container.attempt"

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
ContainerState = Literal["created", "running", "exited", "unknown"]
SandboxState = Literal["ready", "notready"]


# --------------------------------------------------------------------------- errors


class ContainerRuntimeError(Exception):
    """Base of runtime failures; the message is one line a user can act on."""


class RuntimeUnavailableError(ContainerRuntimeError):
    """The runtime cannot run containers at all (not installed, misconfigured, not answering)."""


class ImagePullError(ContainerRuntimeError):
    """An image could not be made available; ``reason`` is what the pod status shows
    (``ErrImagePull``, ``ErrImageNeverPull``, ``InvalidImageName``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ContainerNotFoundError(ContainerRuntimeError):
    """The container or sandbox is gone (removed behind the agent's back, or never existed)."""


class ContainerStartError(ContainerRuntimeError):
    """Creating or starting a container failed; the kubelet reports it as
    ``CreateContainerError``/``RunContainerError`` and retries with back-off."""


# --------------------------------------------------------------------------- runtime identity


@dataclass(frozen=True)
class RuntimeVersion:
    """Goes into ``Node.status.nodeInfo.containerRuntimeVersion`` (``podman://4.3.1``)."""

    runtime_name: str
    runtime_version: str
    api_version: str = ""

    def __str__(self) -> str:
        return f"{self.runtime_name}://{self.runtime_version}"


@dataclass(frozen=True)
class RuntimeStatus:
    """Feeds the node's Ready condition: when not ok, ``reason`` is the one-line message
    (what is wrong and how to fix it) the NotReady condition carries."""

    ok: bool
    reason: str = ""


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageRef:
    """A locally present image: ``id`` becomes ``containerStatuses[].imageID``."""

    image: str
    id: str
    digest: str = ""
    size: int = 0


# --------------------------------------------------------------------------- sandboxes


@dataclass
class DnsConfig:
    """resolv.conf of the pod (from dnsPolicy/dnsConfig); empty means the host's."""

    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass
class PortMapping:
    """A containerPort; with ``host_port`` it is also published on the node (hostPort)."""

    container_port: int
    host_port: int | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    host_ip: str = ""


@dataclass
class SandboxSpec:
    """The pod-level environment every container of a pod shares (network, hostname, DNS)."""

    uid: str
    namespace: str
    name: str
    hostname: str = ""
    dns: DnsConfig | None = None
    port_mappings: list[PortMapping] = field(default_factory=list)
    #: runtime network to attach to; None means the runtime's default pod network and
    #: ``"host"`` the host's own network namespace (``spec.hostNetwork``)
    network: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str | None = None
    #: how many times the sandbox was re-created for this pod
    attempt: int = 0


@dataclass
class SandboxStatus:
    """What the kubelet needs to write ``status.podIP`` and to adopt running pods."""

    id: str
    uid: str
    namespace: str
    name: str
    state: SandboxState
    ip: str | None = None
    network: str | None = None
    created_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    attempt: int = 0


# --------------------------------------------------------------------------- containers


@dataclass
class Mount:
    """A volume as the container sees it. ``host_path`` is what the kubelet prepared
    (hostPath, emptyDir on disk, projected ConfigMap/Secret files); ``tmpfs`` is an
    emptyDir with ``medium: Memory`` (``tmpfs_size`` from its sizeLimit)."""

    container_path: str
    host_path: str | None = None
    read_only: bool = False
    tmpfs: bool = False
    tmpfs_size: int | None = None


@dataclass
class Resources:
    """Limits the runtime enforces with cgroups (requests only matter to the scheduler)."""

    cpu_limit_millis: int | None = None
    memory_limit_bytes: int | None = None


@dataclass
class ContainerSpec:
    """One container of a pod, after the kubelet resolved env vars, volumes and images.

    ``command`` replaces the image's entrypoint and ``args`` its cmd, with Kubernetes'
    rules (command alone drops the image's cmd too).
    """

    name: str
    image: str
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    #: ordered (name, value) pairs; a later duplicate wins, as in Kubernetes
    env: list[tuple[str, str]] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    run_as_user: int | None = None
    run_as_group: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin: bool = False
    #: restart count; part of the runtime's name so a restarted container gets a new one
    attempt: int = 0
    #: seconds to wait after SIGTERM when stopped (terminationGracePeriodSeconds)
    stop_timeout_s: int | None = None


@dataclass
class ContainerStatus:
    """Everything ``status.containerStatuses[]`` is built from, rebuilt from labels alone."""

    id: str
    name: str
    sandbox_id: str
    pod_uid: str
    namespace: str
    pod_name: str
    state: ContainerState
    image: str
    image_id: str = ""
    exit_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: for exited containers: OOMKilled, Completed or Error
    reason: str = ""
    message: str = ""
    attempt: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerStats:
    """A usage reading for metrics (``kubectl top``); cpu is cumulative so rates can be taken."""

    id: str
    timestamp: datetime
    cpu_usage_nanos: int
    memory_usage_bytes: int
    memory_limit_bytes: int = 0


# --------------------------------------------------------------------------- exec


class ExecSession(Protocol):
    """An interactive ``kubectl exec``: the API server's WebSocket bridge pumps these streams
    (channel 0 stdin, 1 stdout, 2 stderr, 4 resize) into the runtime and back."""

    def output(self) -> AsyncIterator[tuple[Literal["stdout", "stderr"], bytes]]:
        """Output chunks as they come; with a tty everything arrives as stdout. Ends when the
        process closes its output."""
        ...

    async def write(self, data: bytes) -> None:
        """Send bytes to the process' stdin."""
        ...

    async def close_stdin(self) -> None:
        """Signal end of input (the process sees EOF)."""
        ...

    async def resize(self, width: int, height: int) -> None:
        """Change the terminal size (tty sessions only)."""
        ...

    async def wait(self) -> int:
        """Wait for the process to end; its exit code."""
        ...

    async def close(self) -> None:
        """Release the connection (the process may keep running if it ignores hangup)."""
        ...


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class ContainerRuntime(Protocol):
    """What a kubelet needs from a container runtime. Identifiers are the runtime's ids;
    sandboxes are addressed by pod uid, the one key the kubelet always has."""

    async def version(self) -> RuntimeVersion:
        """For ``nodeInfo.containerRuntimeVersion``."""
        ...

    async def status(self) -> RuntimeStatus:
        """For the node's Ready condition: can this runtime run containers right now?"""
        ...

    async def pull_image(
        self, image: str, auth: dict[str, str] | None = None, policy: PullPolicy = "IfNotPresent"
    ) -> ImageRef:
        """Make ``image`` present following imagePullPolicy; ``auth`` comes from
        imagePullSecrets (``username``/``password``). Raises ImagePullError."""
        ...

    async def image_present(self, image: str) -> ImageRef | None:
        """For IfNotPresent/Never decisions and imageID without a pull."""
        ...

    async def ensure_network(self, name: str, subnet: str, gateway: str | None = None) -> None:
        """Create (or check) the bridge network pods attach to, on the node's pod CIDR."""
        ...

    async def run_pod_sandbox(self, spec: SandboxSpec) -> SandboxStatus:
        """Create and start the pod's sandbox (network namespace, hostname, DNS, hostPorts).
        Returns the running sandbox (with its IP) if one already exists for the uid."""
        ...

    async def stop_pod_sandbox(self, uid: str, timeout_s: int = 10) -> None:
        """Stop every container of the pod and the sandbox (pod deletion, sandbox changes);
        ``timeout_s`` is the grace period before SIGKILL."""
        ...

    async def remove_pod_sandbox(self, uid: str) -> None:
        """Remove the sandbox and every container in it; no error if already gone."""
        ...

    async def list_sandboxes(self) -> list[SandboxStatus]:
        """Every kybern sandbox on the node, for adoption after an agent restart."""
        ...

    async def remove_unowned(self, keep_uids: set[str]) -> list[str]:
        """Remove sandboxes and containers of pods not in ``keep_uids`` (pods deleted while
        the agent was down); returns the uids removed. The kubelet calls it after its first
        sync, once it knows which pods are bound to the node."""
        ...

    async def create_container(self, sandbox: SandboxStatus, spec: ContainerSpec) -> str:
        """Create (not start) a container in the sandbox; returns its id. Separate from
        start so the kubelet can record the id before anything runs."""
        ...

    async def start_container(self, id: str) -> None:
        """Start a created container; raises ContainerStartError with the runtime's reason."""
        ...

    async def stop_container(self, id: str, timeout_s: int = 30) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (terminationGracePeriodSeconds)."""
        ...

    async def remove_container(self, id: str) -> None:
        """Remove a (stopped) container; no error if already gone."""
        ...

    async def list_containers(self, sandbox_uid: str | None = None) -> list[ContainerStatus]:
        """Containers of one pod (or all kybern containers): the kubelet's sync loop compares
        these with the pod spec to decide restarts, and builds containerStatuses from them."""
        ...

    def container_logs(
        self,
        id: str,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        """``kubectl logs``: raw output (stdout and stderr interleaved), with RFC3339
        timestamps at line starts if asked. With ``follow`` it ends when the container
        exits or the consumer stops iterating."""
        ...

    async def exec(self, id: str, cmd: list[str], stdin: bool = False, tty: bool = False) -> ExecSession:
        """``kubectl exec``: an interactive session running a new process.

        ``kubectl attach`` needs the container's main process instead; a runtime that can
        do it adds ``async def attach(self, id: str, stdin: bool = False) -> ExecSession``.
        It stays outside this protocol because not every runtime can (the streaming server
        answers 501 without it), as CRI's Attach is optional for a runtime."""
        ...

    async def exec_sync(self, id: str, cmd: list[str], timeout: float | None = None) -> tuple[int, bytes]:
        """Exec probes: run to completion; (exit code, combined output). A timeout raises
        TimeoutError (the probe then fails)."""
        ...

    async def stats(self, id: str) -> ContainerStats:
        """A usage reading for metrics."""
        ...

    async def close(self) -> None:
        """Release connections and helper processes (containers keep running)."""
        ...
