"""The API client interface components use to talk to the API server.

Components write through the API like any client (kube-controller-manager does the same), so
they work unchanged whether the API server runs in the same process or on another machine.
Resources are named like kubectl does: ``pods``, ``deployments.apps``, ``leases.coordination.k8s.io``.
Objects travel as plain dicts in the wire format; convert to a model with
``msgspec.convert(obj, kybern.models.X)`` where typed access helps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

PatchType = Literal["json", "merge", "strategic", "apply"]


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the Kubernetes Status object the server sent."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.code: int = int(status.get("code") or 0)
        self.reason: str = status.get("reason") or ""
        super().__init__(f"{self.code} {self.reason}: {status.get('message', '')}")

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
    object: dict[str, Any]


class ApiClient(Protocol):
    async def get(
        self, resource: str, name: str, namespace: str | None = None, subresource: str | None = None
    ) -> dict[str, Any]: ...

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The whole list (pages followed); ``metadata.resourceVersion`` is the list's RV."""
        ...

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``; ends when the server closes the stream."""
        ...

    async def create(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]: ...

    async def update(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]: ...

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        patch_type: PatchType = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]: ...

    async def delete(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...

    async def close(self) -> None: ...
