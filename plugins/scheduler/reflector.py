"""List-then-watch of one resource, re-watching from the last resourceVersion and listing
again after a 410 Expired (client-go's reflector, minus the informer machinery)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kybern.client import ApiClient, ApiError
from loguru import logger

log = logger.bind(component="scheduler")

#: server-side watch timeout: a long-lived watch that ends is simply re-opened
WATCH_TIMEOUT = 300


class Reflector:
    def __init__(
        self,
        client: ApiClient,
        resource: str,
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        field_selector: str | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.on_list = on_list
        self.on_event = on_event
        self.field_selector = field_selector
        self.rv: str | None = None
        self.synced = asyncio.Event()

    async def list_once(self) -> None:
        listing = await self.client.list(self.resource, field_selector=self.field_selector)
        self.rv = (listing.get("metadata") or {}).get("resourceVersion")
        self.on_list(listing.get("items") or [])
        self.synced.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if self.rv is None:
                    await self.list_once()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.code == 410:
                    self.rv = None
                    continue
                log.warning("watch {} failed: {}", self.resource, exc)
                await asyncio.sleep(1)
            except Exception as exc:
                log.warning("watch {} failed: {}: {}", self.resource, type(exc).__name__, exc)
                await asyncio.sleep(1)

    async def _watch(self) -> None:
        async for event in self.client.watch(
            self.resource,
            resource_version=self.rv,
            field_selector=self.field_selector,
            timeout_seconds=WATCH_TIMEOUT,
        ):
            obj = event.object
            if event.type == "ERROR":
                if int(obj.get("code") or 0) == 410:
                    self.rv = None
                    return
                raise ApiError(obj)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.rv = rv
            if event.type != "BOOKMARK":
                self.on_event(event.type, obj)
