"""Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

With two servers on one database both run a controller manager; only the holder of the Lease
runs controllers. A candidate takes the Lease when it is missing, free (empty holder) or
expired; the holder renews it every ``retry_period`` and gives up leadership when it could not
renew for ``renew_deadline``. Writes carry the Lease's resourceVersion, so of two candidates
racing for an expired Lease exactly one wins (the other gets 409 Conflict).

Expiry is judged on this process' own clock: a Lease counts as expired when its record has not
changed for ``lease_duration`` seconds since we first saw that record (client-go's
observedTime), so clock skew between servers does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kybern.client import ApiClient, ApiError
from loguru import logger

log = logger.bind(component="leaderelection")

LEASES = "leases.coordination.k8s.io"


def micro_time() -> str:
    """metav1.MicroTime wire format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unique_identity(prefix: str | None = None) -> str:
    """``host_uuid`` like kube-controller-manager's id: unique per process."""
    return f"{prefix or socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Campaigns for one Lease and runs ``on_started_leading`` while holding it.

    ``run()`` loops until ``stop()``: acquire, lead (the callback runs as a task, cancelled when
    leadership is lost), then campaign again. ``stop()`` releases a held Lease so another
    candidate takes over at once instead of after the lease duration.
    """

    def __init__(
        self,
        client: ApiClient,
        name: str,
        namespace: str = "kube-system",
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], Awaitable[None]] | None = None,
        on_stopped_leading: Callable[[], Awaitable[None]] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or unique_identity(f"{socket.gethostname()}-{os.getpid()}")
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._observed_rv: str | None = None
        self._leading = False
        self._stopping = asyncio.Event()
        self._lead_task: asyncio.Task[None] | None = None
        self.leader: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading

    # --- one attempt --------------------------------------------------------------------------

    def _spec(self, transitions: int, acquire_time: str | None) -> dict[str, Any]:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        record = {k: spec.get(k) for k in ("holderIdentity", "renewTime", "leaseTransitions", "acquireTime")}
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()
            holder = spec.get("holderIdentity") or None
            if holder != self.leader:
                self.leader = holder
                if holder and self.on_new_leader is not None:
                    self.on_new_leader(holder)
        self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the Lease afterwards."""
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except ApiError as exc:
            if not exc.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, None),
            }
            try:
                created = await self.client.create(LEASES, body, self.namespace)
            except ApiError as exc2:
                if exc2.code == 409:
                    return False
                raise
            self._observe(created)
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        ours = holder == self.identity
        expired = time.monotonic() > self._observed_at + duration
        if holder and not ours and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        acquire_time = spec.get("acquireTime") if ours else None
        if not ours:
            transitions += 1 if holder or spec.get("acquireTime") else 0
        lease = {**lease, "spec": {**spec, **self._spec(transitions, acquire_time)}}
        try:
            updated = await self.client.update(LEASES, lease, self.namespace)
        except ApiError as exc:
            if exc.conflict or exc.code == 409:
                return False
            raise
        self._observe(updated)
        return True

    async def release(self) -> None:
        """Give the Lease up (empty holder, 1 s duration) if we hold it."""
        if not self._leading and self.leader != self.identity:
            return
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time()
            lease["spec"] = {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
            }
            await self.client.update(LEASES, lease, self.namespace)
        except Exception as exc:
            log.warning("releasing lease {}/{} failed: {}", self.namespace, self.name, exc)

    # --- the loop -----------------------------------------------------------------------------

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except Exception as exc:
            log.debug("lease {}/{}: {!r}", self.namespace, self.name, exc)
            return False

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            # campaign
            while not await self._attempt():
                if await self._sleep(self.retry_period):
                    return
            if self._stopping.is_set():
                await self.release()
                return
            self._leading = True
            log.info("{} became leader of {}/{}", self.identity, self.namespace, self.name)
            if self.on_started_leading is not None:
                self._lead_task = asyncio.create_task(self.on_started_leading(), name=f"leading {self.name}")
            # renew
            last_renew = time.monotonic()
            while True:
                if await self._sleep(self.retry_period):
                    break
                if self._lead_task is not None and self._lead_task.done():
                    # the work ended on its own (a crash): hand the lease on instead of
                    # holding it while doing nothing
                    exc = None if self._lead_task.cancelled() else self._lead_task.exception()
                    log.warning("{}: leading {} ended ({!r}); stepping down", self.identity, self.name, exc)
                    await self._stop_leading()
                    await self.release()
                    self._leading = False
                    await self._sleep(self.retry_period)
                    break
                if await self._attempt():
                    last_renew = time.monotonic()
                elif time.monotonic() - last_renew > self.renew_deadline or self.leader != self.identity:
                    log.warning("{} lost the lease {}/{}", self.identity, self.namespace, self.name)
                    break
            if not self._leading:
                continue
            await self._stop_leading()
            if self._stopping.is_set():
                await self.release()
                self._leading = False
                return
            self._leading = False

    async def _stop_leading(self) -> None:
        task, self._lead_task = self._lead_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.on_stopped_leading is not None:
            try:
                await self.on_stopped_leading()
            except Exception:
                log.exception("on_stopped_leading failed")

    def stop(self) -> None:
        """Ask ``run()`` to end (it releases the Lease on the way out)."""
        self._stopping.set()
