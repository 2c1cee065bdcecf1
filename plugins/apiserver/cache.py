"""The watch cache: every kind's objects and recent events in memory, fed by one store watch.

kube-apiserver serves list and watch from its cacher so reads do not reach etcd; kybern does
the same over SQL. At start the whole ``/registry/`` tree is listed at one revision, then one
store watch from that revision keeps it current. Each kind keeps its live objects (dict plus
encoded JSON, with metadata.resourceVersion filled in) and a bounded ring of recent events, so
a watch may start from an older resourceVersion; anything older than the ring is 410 Expired.

All mutation happens on the event loop (the store watch runs in a thread and hands batches
over with ``call_soon_threadsafe``), so a watch registration is atomic with respect to events.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kybern.plugins.apiserver.bodies import dumps, loads
from kybern.plugins.apiserver.registry import Registry
from kybern.resources import ResourceType
from kybern.store import CompactedError, Event, EventType, Store, StoreError
from loguru import logger

log = logger.bind(component="apiserver")

#: recent events kept per kind for watches from an older resourceVersion (env override for tests)
RING_SIZE = int(os.environ.get("KYBERN_WATCH_CACHE_EVENTS", "1000"))
WATCHER_BUFFER = 10_000


@dataclass(slots=True)
class CachedObject:
    key: str
    obj: dict[str, Any]
    raw: bytes
    rev: int


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    obj: CachedObject
    prev: CachedObject | None
    rev: int


def decode_value(key: str, value: bytes, rev: int) -> CachedObject:
    obj = loads(value)
    meta = obj.setdefault("metadata", {})
    meta["resourceVersion"] = str(rev)
    return CachedObject(key, obj, dumps(obj), rev)


#: (event, watcher) -> the event to send (maybe re-typed), or None to skip it
Filter = Callable[[CacheEvent], "CacheEvent | None"]


@dataclass(eq=False)
class Watcher:
    prefix: str
    filter: Filter
    queue: asyncio.Queue[CacheEvent | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def offer(self, event: CacheEvent) -> None:
        if not event.obj.key.startswith(self.prefix):
            return
        out = self.filter(event)
        if out is None:
            return
        if self.queue.qsize() >= WATCHER_BUFFER:
            # a consumer this slow is dropped, as kube's cacher terminates blocked watchers
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(out)


class ResourceCache:
    def __init__(self, rt: ResourceType, start_rev: int) -> None:
        self.rt = rt
        self.objects: dict[str, CachedObject] = {}
        self.ring: deque[CacheEvent] = deque(maxlen=RING_SIZE)
        #: events at or below this revision may be missing from the ring
        self.oldest_servable = start_rev
        self.watchers: set[Watcher] = set()

    def apply(self, ev: CacheEvent) -> None:
        if ev.type == "DELETED":
            self.objects.pop(ev.obj.key, None)
        else:
            self.objects[ev.obj.key] = ev.obj
        if len(self.ring) == self.ring.maxlen:
            self.oldest_servable = self.ring[0].rev
        self.ring.append(ev)
        dead = []
        for w in self.watchers:
            if w.overflowed:
                dead.append(w)
                continue
            w.offer(ev)
        for w in dead:
            self.watchers.discard(w)

    def snapshot(self, prefix: str) -> list[CachedObject]:
        items = [o for k, o in self.objects.items() if k.startswith(prefix)]
        items.sort(key=lambda o: o.key)
        return items

    def events_since(self, rev: int) -> list[CacheEvent] | None:
        """Events after ``rev``, or None when the ring no longer reaches back that far."""
        if rev < self.oldest_servable:
            return None
        return [e for e in self.ring if e.rev > rev]


class WatchCache:
    def __init__(self, store: Store, registry: Registry, run: Callable[..., Any]) -> None:
        self.store = store
        self.registry = registry
        self._run = run  # coroutine function running a sync callable in the store's threads
        self.caches: dict[str, ResourceCache] = {}
        self._by_segment: dict[str, ResourceCache] = {}
        self.revision = 0
        self.start_revision = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._store_watch: Any = None
        self.healthy = False
        self._relist_task: asyncio.Future[None] | None = None

    def cache_for(self, rt: ResourceType) -> ResourceCache:
        return self.caches[rt.key_segment]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        items, rev = await self._run(self._list_all)
        self.start_revision = self.revision = rev
        for rt in self.registry.types:
            rc = ResourceCache(rt, rev)
            self.caches[rt.key_segment] = rc
            self._by_segment[rt.key_segment] = rc
        for kv in items:
            rc = self._cache_for_key(kv.key)
            if rc is not None:
                try:
                    rc.objects[kv.key] = decode_value(kv.key, kv.value, kv.mod_revision)
                except Exception as exc:
                    log.warning("cannot decode stored {}: {}", kv.key, exc)
        self._store_watch = await self._run(self.store.watch, "/registry/", rev)
        self._thread = threading.Thread(target=self._pump, name="apiserver-watch-cache", daemon=True)
        self._thread.start()
        self.healthy = True
        log.debug("watch cache ready at revision {} with {} objects", rev, len(items))

    def _list_all(self) -> tuple[list[Any], int]:
        out: list[Any] = []
        token = None
        rev = None
        while True:
            res = self.store.list("/registry/", revision=rev, limit=5000, continue_token=token)
            rev = res.revision
            out.extend(res.items)
            token = res.continue_token
            if not token:
                return out, rev

    def _cache_for_key(self, key: str) -> ResourceCache | None:
        parts = key.split("/", 4)
        if len(parts) < 3:
            return None
        rc = self._by_segment.get(parts[2])
        if rc is None and len(parts) >= 4:
            rc = self._by_segment.get(f"{parts[2]}/{parts[3]}")
        return rc

    def _pump(self) -> None:
        """Thread: read store events, hand them to the loop in batches."""
        w = self._store_watch
        loop = self._loop
        assert loop is not None
        while not self._stop.is_set():
            try:
                ev = w.get(timeout=0.5)
            except (CompactedError, StoreError) as exc:
                if self._stop.is_set():
                    return
                log.error("store watch failed: {}; watch cache is restarting", exc)
                loop.call_soon_threadsafe(self._restart)
                return
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.error("store watch failed: {}", exc)
                loop.call_soon_threadsafe(self._restart)
                return
            if ev is None:
                continue
            batch = [ev]
            while len(batch) < 500:
                try:
                    more = w.get(timeout=0)
                except Exception:
                    break
                if more is None:
                    break
                batch.append(more)
            try:
                loop.call_soon_threadsafe(self._apply_batch, batch)
            except RuntimeError:
                return  # loop closed

    def _restart(self) -> None:
        self.healthy = False
        self._relist_task = asyncio.ensure_future(self._relist())

    async def _relist(self) -> None:
        """After losing the store watch: list again, send watchers the difference."""
        try:
            items, rev = await self._run(self._list_all)
            fresh: dict[str, dict[str, CachedObject]] = {seg: {} for seg in self.caches}
            for kv in items:
                rc = self._cache_for_key(kv.key)
                if rc is not None:
                    fresh[rc.rt.key_segment][kv.key] = decode_value(kv.key, kv.value, kv.mod_revision)
            for seg, rc in self.caches.items():
                new = fresh[seg]
                for w in list(rc.watchers):  # watchers cannot be told what they missed: end them
                    w.queue.put_nowait(None)
                rc.watchers.clear()
                rc.objects = new
                rc.ring.clear()
                rc.oldest_servable = rev
            self.revision = rev
            self._store_watch = await self._run(self.store.watch, "/registry/", rev)
            self._thread = threading.Thread(target=self._pump, name="apiserver-watch-cache", daemon=True)
            self._thread.start()
            self.healthy = True
            self._wake()
        except Exception as exc:
            log.error("watch cache relist failed: {}; retrying", exc)
            await asyncio.sleep(1)
            self._relist_task = asyncio.ensure_future(self._relist())

    def _apply_batch(self, batch: list[Event]) -> None:
        for ev in batch:
            if ev.revision <= self.revision:
                continue
            rc = self._cache_for_key(ev.kv.key)
            if rc is not None:
                try:
                    cur = decode_value(ev.kv.key, ev.kv.value, ev.revision)
                    prev = rc.objects.get(ev.kv.key)
                    if ev.type is EventType.DELETE:
                        ce = CacheEvent("DELETED", cur, prev, ev.revision)
                    elif prev is None:
                        ce = CacheEvent("ADDED", cur, None, ev.revision)
                    else:
                        ce = CacheEvent("MODIFIED", cur, prev, ev.revision)
                    rc.apply(ce)
                except Exception as exc:
                    log.warning("cannot apply store event for {}: {}", ev.kv.key, exc)
            self.revision = ev.revision
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        keep = []
        for rev, fut in self._waiters:
            if self.revision >= rev:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_for(self, rev: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has seen revision ``rev``; False on timeout."""
        if self.revision >= rev:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (rev, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return self.revision >= rev
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def add_watcher(self, rt: ResourceType, w: Watcher) -> None:
        self.cache_for(rt).watchers.add(w)

    def remove_watcher(self, rt: ResourceType, w: Watcher) -> None:
        self.cache_for(rt).watchers.discard(w)

    def stop(self) -> None:
        self._stop.set()
        if self._store_watch is not None:
            try:
                self._store_watch.close()
            except Exception:
                pass
        for rc in self.caches.values():
            for w in rc.watchers:
                w.queue.put_nowait(None)
            rc.watchers.clear()
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters = []
