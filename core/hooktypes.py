"""Small value types that hook implementations receive or return.

They live apart from ``hookspecs`` so the spec module stays a readable list of hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from kybern.components import RunContext
    from kybern.resources import ResourceType


@dataclass
class AdmissionRequest:
    """One write on its way into the store, as admission plugins see it.

    ``object`` is the decoded object as a plain dict (after defaulting); mutating hooks
    change it in place. ``old_object`` is the stored object for UPDATE and DELETE.
    """

    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    resource: ResourceType
    namespace: str | None
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None = None
    subresource: str = ""
    user: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class RuntimeSpec:
    """A container runtime a node agent can drive (``--runtime NAME``)."""

    name: str
    #: builds the runtime for one node agent; the object follows the node-agent's runtime
    #: interface (``kybern.runtime`` once the node agent defines it)
    factory: Callable[[RunContext], Any]
    description: str = ""


@dataclass(frozen=True)
class DnsRecord:
    """An answer record for cluster DNS: ``data`` is an address, target or text by type."""

    name: str
    type: Literal["A", "AAAA", "SRV", "PTR", "CNAME", "TXT"]
    data: str
    ttl: int = 5
    #: SRV only
    priority: int = 0
    weight: int = 0
    port: int = 0


@dataclass(frozen=True)
class ContainerLogLine:
    """One line a container wrote, as the cluster-level logging add-on ships it."""

    namespace: str
    pod: str
    container: str
    node: str
    stream: Literal["stdout", "stderr"]
    timestamp: str
    message: str
    labels: dict[str, str] = field(default_factory=dict)


class LogSink(Protocol):
    """Where cluster-level logging sends container log lines."""

    name: str

    def write(self, lines: list[ContainerLogLine]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class MetricSample:
    """A resource usage reading (what metrics-server serves to `kubectl top`)."""

    kind: Literal["node", "pod", "container"]
    name: str
    namespace: str | None
    container: str | None
    timestamp: str
    window_seconds: float
    #: cpu in cores, memory in bytes
    cpu: float
    memory: int


class MetricsSource(Protocol):
    """Something the metrics add-on reads usage from (a node agent's runtime, cgroups...)."""

    name: str

    def collect(self) -> list[MetricSample]: ...
