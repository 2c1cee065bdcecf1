"""The userspace proxy: ClusterIPs as real local addresses, sockets that relay to endpoints.

ClusterIPs go on a dummy interface (``kybern-svc0``; an empty bridge where the kernel has no
dummy module) as /32 addresses, so the host accepts
connections to them: from host processes directly, from pods because their default route
leads to the host. Each service port gets a listener on ClusterIP:port (and one on
0.0.0.0:nodePort for NodePorts). Endpoint changes only swap the listener's backend list;
listeners and addresses come and go with service ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from kybern.client import ApiClient
from kybern.informers import SharedInformerFactory
from kybern.plugins.proxy.model import ServiceState, state_from_objects
from kybern.plugins.proxy.userspace.forwarder import Backends, TcpListener, UdpListener
from loguru import logger

log = logger.bind(component="userspace-proxy")

DEFAULT_INTERFACE = "kybern-svc0"

Listener = TcpListener | UdpListener


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    return proc.returncode or 0, err.decode(errors="replace").strip()


class UserspaceProxier:
    def __init__(self, api: ApiClient, interface: str = DEFAULT_INTERFACE, node_ports: bool = True) -> None:
        self.api = api
        self.interface = interface
        self.node_ports = node_ports
        self.factory = SharedInformerFactory(api)
        self.services = self.factory.informer("services")
        self.slices = self.factory.informer("endpointslices.discovery.k8s.io")
        self.endpoints = self.factory.informer("endpoints")
        self.applied: dict[str, ServiceState] = {}
        self.backends: dict[str, Backends] = {}
        #: (service port key, host, port) -> listener
        self.listeners: dict[tuple[str, str, int], Listener] = {}
        self.addresses: set[str] = set()
        self.sync_latencies: list[float] = []
        self._dirty = asyncio.Event()
        self._pending_since: float | None = None
        self._synced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        for inf in (self.services, self.slices, self.endpoints):
            inf.add_event_handler(self._changed, lambda _old, new: self._changed(new), self._changed)

    def _changed(self, _obj: Any) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._dirty.set()

    async def start(self) -> None:
        # start clean: addresses a crashed run left behind would shadow nothing but confuse
        await _ip("link", "del", self.interface)
        code, err = await _ip("link", "add", self.interface, "type", "dummy")
        if code != 0:  # kernels without the dummy module: an empty bridge holds addresses as well
            code, err = await _ip("link", "add", self.interface, "type", "bridge")
        if code != 0:
            raise RuntimeError(f"cannot create dummy interface {self.interface}: {err}")
        await _ip("link", "set", self.interface, "up")
        self.factory.start()
        if not await self.factory.wait_for_sync(timeout=60):
            log.warning("userspace proxy: informers not synced after 60s")
        await self._sync()
        self._task = asyncio.create_task(self._loop(), name="userspace proxy sync")
        log.info("userspace proxy ready ({} service ports)", len(self.applied))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.factory.stop()
        for listener in self.listeners.values():
            await listener.stop()
        self.listeners.clear()
        await _ip("link", "del", self.interface)
        with contextlib.suppress(Exception):
            await self.api.close()

    async def _loop(self) -> None:
        while True:
            await self._dirty.wait()
            try:
                await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("userspace proxy sync failed: {}", exc)
                await asyncio.sleep(1)
                self._dirty.set()

    def wanted(self) -> dict[str, ServiceState]:
        return state_from_objects(
            self.services.store.list(), self.slices.store.list(), self.endpoints.store.list()
        )

    def _binds(self, state: ServiceState) -> set[tuple[str, str, int]]:
        p = state.port
        binds = {(p.key, ip, p.port) for ip in p.cluster_ips}
        if p.node_port and self.node_ports:
            binds.add((p.key, "0.0.0.0", p.node_port))
        return binds

    async def _sync(self) -> None:
        self._dirty.clear()
        since, self._pending_since = self._pending_since, None
        wanted = self.wanted()
        changed = wanted != self.applied
        want_ips = {ip for st in wanted.values() for ip in st.port.cluster_ips}
        for ip in sorted(want_ips - self.addresses):
            code, err = await _ip("addr", "add", f"{ip}/32", "dev", self.interface)
            if code == 0 or "exists" in err:
                self.addresses.add(ip)
            else:
                log.warning("cannot add {} to {}: {}", ip, self.interface, err)
        for key, st in wanted.items():
            self.backends.setdefault(key, Backends()).endpoints = st.endpoints
        want_binds = {b: wanted[b[0]] for st in wanted.values() for b in self._binds(st)}
        for bind in list(self.listeners.keys() - want_binds.keys()):
            await self.listeners.pop(bind).stop()
        for bind, st in want_binds.items():
            if bind in self.listeners:
                continue
            key, host, port = bind
            cls = UdpListener if st.port.protocol == "udp" else TcpListener
            if st.port.protocol not in ("tcp", "udp"):
                continue
            listener = cls(host, port, self.backends[key])
            try:
                await listener.start()
            except OSError as exc:
                log.warning("{}: cannot listen on {}:{}/{}: {}", key, host, port, st.port.protocol, exc)
                continue
            self.listeners[bind] = listener
        for key in self.backends.keys() - wanted.keys():
            del self.backends[key]
        for ip in sorted(self.addresses - want_ips):
            await _ip("addr", "del", f"{ip}/32", "dev", self.interface)
            self.addresses.discard(ip)
        self.applied = wanted
        if since is not None and changed:
            self.sync_latencies.append(time.monotonic() - since)
            del self.sync_latencies[:-10000]
        async with self._synced:
            self._synced.notify_all()

    async def wait_until(self, predicate: Any, timeout: float) -> bool:
        async def check() -> None:
            async with self._synced:
                await self._synced.wait_for(lambda: predicate(self.applied))

        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return False
        return True
