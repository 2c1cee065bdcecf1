"""The ``service-allocation`` component: gives the admission hook its store, releases keys
of deleted Services from a store watch, and runs the repair pass."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from kybern.components import ConfigurationError, RunContext
from kybern.plugins.services.reservations import SERVICE_PREFIX, Reservations, owner_of, used_by
from kybern.store import CompactedError, EventType, StoreError
from loguru import logger

log = logger.bind(component="services")

#: the kube-dns Service's address unless --cluster-dns says otherwise
DEFAULT_CLUSTER_DNS = "10.43.0.10"
#: seconds between repair passes (kube's repair controllers run every 3 minutes)
REPAIR_INTERVAL = 60.0

#: the reservations of this process's store, for the admission hook (set while running)
current: Reservations | None = None


class ReservationKeeper:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.reservations: Reservations | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        global current
        if self.ctx.store is None:
            raise ConfigurationError("service allocation needs the store (run it in the server process)")
        self.reservations = Reservations(self.ctx.store)
        added, freed = await asyncio.to_thread(self.reservations.repair)
        if added or freed:
            log.info("service allocations repaired: {} reserved, {} freed", added, freed)
        self._hold_dns_address()
        current = self.reservations
        self._task = asyncio.create_task(self._run(), name="service-allocation")

    def _hold_dns_address(self) -> None:
        """Keep the cluster DNS address (``--cluster-dns``) for ``kube-system/kube-dns``, which
        the dns component creates once the API serves: a Service created in between must not
        get it (kube reserves it the same way, by convention of the range's low band)."""
        assert self.reservations is not None
        config = self.ctx.config
        if "dns" in set(config.disabled):
            return
        ip = str(config.extra.get("cluster_dns") or DEFAULT_CLUSTER_DNS)
        if self.reservations.reserve(owner_of("kube-system", "kube-dns"), {ip}, set()):
            log.warning("the cluster DNS address {} is held by another Service", ip)

    async def _run(self) -> None:
        assert self.reservations is not None
        store = self.reservations.store
        loop = asyncio.get_running_loop()
        next_repair = loop.time() + REPAIR_INTERVAL
        while not self._stopping.is_set():
            try:
                watch = await asyncio.to_thread(store.watch, SERVICE_PREFIX, store.current_revision())
            except StoreError as exc:
                log.warning("service allocation: cannot watch Services: {}", exc)
                await asyncio.sleep(1)
                continue
            try:
                while True:
                    stopping = self._stopping.is_set()
                    event = await asyncio.to_thread(watch.get, 0.5 if stopping else 1.0)
                    if event is not None:
                        await asyncio.to_thread(self._handle, event)
                    elif stopping:
                        return  # drained: deletes just before shutdown are released too
                    if loop.time() >= next_repair:
                        next_repair = loop.time() + REPAIR_INTERVAL
                        await asyncio.to_thread(self.reservations.repair)
            except (CompactedError, StoreError) as exc:
                log.info("service allocation: watch ended ({}); repairing and watching again", exc)
                await asyncio.to_thread(self.reservations.repair)
            finally:
                watch.close()

    def _handle(self, event: Any) -> None:
        """Release what a Service gave up: everything when deleted, dropped values on update."""
        assert self.reservations is not None
        before = (
            event.kv.value if event.type is EventType.DELETE else (event.prev.value if event.prev else None)
        )
        if before is None:
            return
        try:
            old = json.loads(before)
            new = json.loads(event.kv.value) if event.type is EventType.PUT else {}
        except ValueError:
            return
        meta = old.get("metadata") or {}
        owner = owner_of(meta.get("namespace"), meta.get("name") or "")
        old_ips, old_ports = used_by(old)
        new_ips, new_ports = used_by(new) if new else (set(), set())
        if old_ips - new_ips or old_ports - new_ports:
            self.reservations.release(owner, old_ips - new_ips, old_ports - new_ports)

    async def stop(self) -> None:
        global current
        current = None
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)
            self._task = None
