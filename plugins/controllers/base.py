"""The shape every queue-driven controller here shares: informer handlers enqueue keys,
workers call ``sync(key)``; an exception retries the key with back-off."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from kybern.workqueue import RateLimitingQueue, run_workers

if TYPE_CHECKING:
    from kybern.controllers import ControllerContext


class QueueController:
    #: the controller's name in logs and events (kube's "replicaset-controller")
    component = "controller"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder(self.component)
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(name=self.component)
        self._task: asyncio.Task[None] | None = None

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self, workers: int) -> None:
        self._task = asyncio.current_task()
        try:
            await run_workers(self.queue, self.sync, workers, name=self.component)
        finally:
            self.queue.shutdown()

    async def stop(self) -> None:
        self.queue.shutdown()
        with contextlib.suppress(Exception):
            await self.recorder.flush()
