"""What a controller plugin provides (hook ``kybern_controllers``) and what it gets to work with.

The controller manager builds every enabled controller once it holds the
``kube-system/kube-controller-manager`` Lease, from one ``ControllerContext``: controllers that
ask the same ``informers`` for the same resource share one watch. ``run(workers)`` returns only
when the controller stops (``stop()`` or cancellation when leadership is lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kybern.client import ApiClient, ApiError
    from kybern.config import Config
    from kybern.events import EventRecorder
    from kybern.informers import SharedInformerFactory


class Controller(Protocol):
    async def run(self, workers: int) -> None:
        """Process work with ``workers`` concurrent workers until stopped."""
        ...

    async def stop(self) -> None:
        """End ``run`` soon (shut queues down); safe to call twice."""
        ...


@dataclass
class ControllerContext:
    #: API client shared by the controllers of one manager (user agent kube-controller-manager)
    client: ApiClient
    informers: SharedInformerFactory
    #: ``recorder("replicaset-controller")``: an EventRecorder with that source component
    recorder: Callable[[str], EventRecorder]
    config: Config | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: the process's ``RunContext.shared`` (the API server's ``ca_file``, ``api_url``, ...)
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControllerSpec:
    #: the name ``--disable`` takes (kube-controller-manager's short name: ``deployment``)
    name: str
    factory: Callable[[ControllerContext], Controller]
    description: str = ""
    #: concurrent workers (kube's --concurrent-*-syncs defaults are 5)
    workers: int = 5


def lost_race(exc: ApiError) -> bool:
    """A write a per-namespace controller may drop: its informer cache lagged (the object
    exists already, or is gone) or the namespace started terminating (403 Forbidden), so the
    next sync sees the truth and retrying now would only fail again."""
    return exc.already_exists or exc.not_found or exc.code == 403
