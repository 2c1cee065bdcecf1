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


class CachedObject:
    """One stored object as served: its JSON (with metadata.resourceVersion) and, decoded only
    when something looks inside (a selector, a table, a read-modify-write), its dict. Lists and
    unfiltered watches send ``raw`` as it is, so most objects are never decoded at all."""

    __slots__ = ("_obj", "key", "raw", "rev")

    def __init__(self, key: str, obj: dict[str, Any] | None, raw: bytes, rev: int) -> None:
        self.key = key
        self._obj = obj
        self.raw = raw
        self.rev = rev

    @property
    def obj(self) -> dict[str, Any]:
        obj = self._obj
        if obj is None:
            obj = self._obj = loads(self.raw)
        return obj

    def __repr__(self) -> str:
        return f"CachedObject({self.key!r}, rev={self.rev})"


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    obj: CachedObject
    prev: CachedObject | None
    rev: int


def decode_obj(value: bytes, rev: int) -> dict[str, Any]:
    """A stored value as an object: the resourceVersion is the revision, not part of the value."""
    obj = loads(value)
    meta = obj.setdefault("metadata", {})
    meta["resourceVersion"] = str(rev)
    return obj  # type: ignore[no-any-return]


def decode_value(key: str, value: bytes, rev: int) -> CachedObject:
    obj = decode_obj(value, rev)
    return CachedObject(key, obj, dumps(obj), rev)


class EventQueue:
    """A watcher's pending events. Cheaper per event than ``asyncio.Queue`` under
    ``asyncio.wait_for`` (a task per wait): a deque and one future, woken by the producer.

    The wait timeout is a liveness check that seldom fires, so one timer is kept across waits
    and only replaced when a wait needs an earlier wake-up: a timer per event (created and
    cancelled at once) cost more than the event's write when many watchers share a kind.
    Waking early is harmless: the caller just looks around and waits again.
    """

    __slots__ = ("_timer", "_waiter", "items")

    def __init__(self) -> None:
        self.items: deque[CacheEvent | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def put_nowait(self, item: CacheEvent | None) -> None:
        self.items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def get_nowait(self) -> CacheEvent | None:
        return self.items.popleft()

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (or less) for an item; whether one is there."""
        if self.items:
            return True
        loop = asyncio.get_running_loop()
        when = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > when:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(when, self._on_timer)
        fut = self._waiter = loop.create_future()
        try:
            await fut
        finally:
            self._waiter = None
        return bool(self.items)

    def close(self) -> None:
        """Drop the pending timer (the watch is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: (event, watcher) -> the event to send (maybe re-typed), or None to skip it
Filter = Callable[[CacheEvent], "CacheEvent | None"]


@dataclass(eq=False)
class Watcher:
    prefix: str
    filter: Filter
    queue: EventQueue = field(default_factory=EventQueue)
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
        #: (key, revision) -> JSON of objects this server just wrote, so the store event that
        #: follows needs no decode and re-encode (see :meth:`prime`)
        self._primed: dict[tuple[str, int], tuple[bytes, dict[str, Any] | None]] = {}
        #: whether the loop takes the store watch's events itself (see _follow)
        self._loop_takes = False
        self._drain_scheduled = False
        #: the drain scheduled from the loop's own thread (a write made on the loop), which
        #: the writer's own drain right after the write makes unnecessary: it is cancelled
        self._drain_handle: asyncio.Handle | None = None
        self._loop_thread = 0

    def cache_for(self, rt: ResourceType) -> ResourceCache:
        return self.caches[rt.key_segment]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
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
        if not self._follow():
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
        """Thread: read store events, hand them to the loop in batches (a store watch without
        ``on_ready``; see :meth:`_follow`)."""
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

    def _follow(self) -> bool:
        """Take the store watch's events on the loop: the watch calls back when it has some
        (from the writer's thread), the loop drains it. No thread blocks in ``get``, so a write
        wakes no other thread, and a write made on the loop itself (ApiServer.run_write) is
        drained right after it, before its response leaves. False if the watch cannot."""
        w = self._store_watch
        on_ready = getattr(w, "on_ready", None)
        if on_ready is None:
            return False
        self._loop_takes = True
        self._drain_scheduled = False
        on_ready(self._ready)
        return True

    def _ready(self) -> None:
        """Any thread: the store watch has events; drain them on the loop (once)."""
        if self._drain_scheduled or self._stop.is_set():
            return
        self._drain_scheduled = True
        loop = self._loop
        assert loop is not None
        try:
            if threading.get_ident() == self._loop_thread:
                self._drain_handle = loop.call_soon(self.drain)
            else:
                loop.call_soon_threadsafe(self.drain)
        except RuntimeError:
            pass  # loop closed

    def drain(self) -> None:
        """Loop: apply whatever the store watch holds now (when the loop takes the events)."""
        w = self._store_watch
        if w is None or not self._loop_takes:
            return
        self._drain_scheduled = False  # before taking: a later event schedules another drain
        handle = self._drain_handle
        if handle is not None:
            self._drain_handle = None
            handle.cancel()  # this drain does its work (harmless when it is that very call)
        batch: list[Event] = []
        failure: Exception | None = None
        try:
            while True:
                ev = w.get(timeout=0)
                if ev is None:
                    break
                batch.append(ev)
        except Exception as exc:
            failure = exc
        if batch:
            self._apply_batch(batch)
        if failure is not None and not self._stop.is_set() and self._store_watch is w:
            log.error("store watch failed: {}; watch cache is restarting", failure)
            self._store_watch = None
            self._restart()

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
            self._primed.clear()
            self._store_watch = await self._run(self.store.watch, "/registry/", rev)
            if not self._follow():
                self._thread = threading.Thread(target=self._pump, name="apiserver-watch-cache", daemon=True)
                self._thread.start()
            self.healthy = True
            self._wake()
        except Exception as exc:
            log.error("watch cache relist failed: {}; retrying", exc)
            await asyncio.sleep(1)
            self._relist_task = asyncio.ensure_future(self._relist())

    def prime(self, key: str, rev: int, raw: bytes, obj: dict[str, Any] | None = None) -> None:
        """The served JSON of an object this server wrote at ``rev`` (exactly what decoding the
        stored value and setting its resourceVersion gives), for the event still to come; and
        ``obj``, the object ``raw`` encodes (which nobody changes any more), so that a watch
        with a selector need not decode ``raw`` again."""
        if rev <= self.revision:
            return  # the event came first (it was decoded)
        if len(self._primed) >= 10_000:  # events lost with a store watch: never grow unbounded
            self._primed.clear()
        self._primed[(key, rev)] = (raw, obj)

    def forget_primed(self) -> None:
        """Drop every primed object: their writes failed (a group commit that did not commit),
        and their revisions will be given to other writes."""
        self._primed.clear()

    def _apply_batch(self, batch: list[Event]) -> None:
        primed = self._primed
        for ev in batch:
            if ev.revision <= self.revision:
                continue
            key = ev.kv.key
            written = primed.pop((key, ev.revision), None) if primed else None
            rc = self._cache_for_key(key)
            if rc is not None:
                try:
                    if written is not None and ev.type is not EventType.DELETE:
                        cur = CachedObject(key, written[1], written[0], ev.revision)
                    else:
                        cur = decode_value(key, ev.kv.value, ev.revision)
                    prev = rc.objects.get(key)
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
