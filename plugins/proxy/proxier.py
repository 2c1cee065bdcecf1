"""The nftables proxy component: informers in, one nft transaction per batch of changes out.

Informer handlers only note that something changed (and when); one sync task recomputes the
wanted state from the caches, diffs it against what it applied last and sends only the
difference to nft. Changes that arrive while nft runs are coalesced into the next sync, so
a burst of endpoint updates costs a few transactions, not one per event. A failed
transaction makes the next sync rebuild the whole table (the applied state is unknown), in
one transaction with the table's deletion, as does a full sync every ``full_sync_period``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from kybern.client import ApiClient
from kybern.informers import SharedInformerFactory
from kybern.plugins.proxy import nftables
from kybern.plugins.proxy.model import ServiceState, state_from_objects
from kybern.plugins.proxy.routes import (
    RouteManager,
    ensure_bridge_netfilter,
    ensure_ip_forward,
    local_addresses,
    node_routes,
)
from loguru import logger

log = logger.bind(component="proxy")

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"


def table_name(node_name: str) -> str:
    """One table per node agent, so two agents on one machine (or a test) never delete each
    other's rules; identical rules in two tables are harmless (the first DNAT wins)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in node_name.lower())
    return f"kybern-proxy-{safe}"[:64]


def _route_fields(node: dict[str, Any]) -> tuple[Any, Any]:
    return (node.get("spec") or {}).get("podCIDR"), (node.get("status") or {}).get("addresses")


class NftablesProxier:
    def __init__(
        self,
        api: ApiClient,
        node_name: str,
        cluster_cidr: str | None = DEFAULT_CLUSTER_CIDR,
        table: str | None = None,
        manage_routes: bool = True,
        full_sync_period: float = 3600.0,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.table = table or table_name(node_name)
        self.manage_routes = manage_routes
        self.full_sync_period = full_sync_period
        self.factory = SharedInformerFactory(api)
        self.services = self.factory.informer("services")
        self.slices = self.factory.informer("endpointslices.discovery.k8s.io")
        self.endpoints = self.factory.informer("endpoints")
        self.nodes = self.factory.informer("nodes") if manage_routes else None
        self.routes = RouteManager()
        self.applied: dict[str, ServiceState] = {}
        #: seconds from the first unsynced change to its rules being in place, per sync
        self.sync_latencies: list[float] = []
        self._dirty = asyncio.Event()
        self._pending_since: float | None = None
        self._rebuild = True
        self._synced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        for inf in (self.services, self.slices, self.endpoints):
            inf.add_event_handler(self._changed, lambda _old, new: self._changed(new), self._changed)
        self._routes_dirty = manage_routes
        if self.nodes is not None:
            # node status changes all the time (heartbeats, conditions): only a new pod CIDR
            # or address means new routes
            self.nodes.add_event_handler(
                self._node_changed,
                lambda old, new: (
                    self._node_changed(new) if _route_fields(old) != _route_fields(new) else None
                ),
                self._node_changed,
            )

    def _node_changed(self, _obj: Any) -> None:
        self._routes_dirty = True
        self._dirty.set()

    def _changed(self, _obj: Any) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._dirty.set()

    async def start(self) -> None:
        await ensure_ip_forward()
        await ensure_bridge_netfilter()
        for orphan in await nftables.remove_orphan_tables():
            log.info("removed table ip {} (its proxy process is gone)", orphan)
        await nftables.run_nft(nftables.skeleton(self.table))
        self._rebuild = False
        self.factory.start()
        if not await self.factory.wait_for_sync(timeout=60):
            log.warning("proxy: informers not synced after 60s; serving what is known")
        await self._sync()
        self._task = asyncio.create_task(self._loop(), name="proxy sync")
        self._timer = asyncio.create_task(self._full_sync_timer(), name="proxy full sync")
        log.info("nftables proxy ready (table ip {}, {} service ports)", self.table, len(self.applied))

    async def stop(self) -> None:
        for task in (self._task, self._timer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.factory.stop()
        with contextlib.suppress(Exception):
            await nftables.delete_table(self.table)
        await self.routes.clear()
        with contextlib.suppress(Exception):
            await self.api.close()

    async def _loop(self) -> None:
        backoff = 0.1
        while True:
            await self._dirty.wait()
            try:
                await self._sync()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("proxy sync failed (rebuilding the table next): {}", exc)
                self._rebuild = True
                self._dirty.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def wanted(self) -> dict[str, ServiceState]:
        return state_from_objects(
            self.services.store.list(), self.slices.store.list(), self.endpoints.store.list()
        )

    async def _sync(self) -> None:
        self._dirty.clear()
        since, self._pending_since = self._pending_since, None
        wanted = self.wanted()
        if self._rebuild:
            # one transaction: the table is replaced atomically, no moment without rules
            tx = nftables.diff(self.table, {}, wanted, self.cluster_cidr)
            await nftables.run_nft(nftables.skeleton(self.table) + "\n" + tx.script())
            self._rebuild = False
        else:
            tx = nftables.diff(self.table, self.applied, wanted, self.cluster_cidr)
            if tx:
                await nftables.run_nft(tx.script())
        self.applied = wanted
        if self.nodes is not None and self._routes_dirty:
            self._routes_dirty = False
            await self.routes.sync(
                node_routes(self.nodes.store.list(), self.node_name, await local_addresses())
            )
        if since is not None and tx:
            self.sync_latencies.append(time.monotonic() - since)
            del self.sync_latencies[:-10000]
        async with self._synced:
            self._synced.notify_all()

    async def _full_sync_timer(self) -> None:
        """Like kube-proxy's periodic full sync: repairs rules someone else changed."""
        while True:
            await asyncio.sleep(self.full_sync_period)
            self._rebuild = True
            self._dirty.set()

    async def wait_until(self, predicate: Callable[[dict[str, ServiceState]], bool], timeout: float) -> bool:
        """Wait until the applied state satisfies ``predicate`` (tests, benchmarks)."""

        async def check() -> None:
            async with self._synced:
                await self._synced.wait_for(lambda: predicate(self.applied))

        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return False
        return True
