"""Shared informers, client-go style: one list+watch per resource feeding a local cache.

Controllers read the cache instead of the API (cheap, consistent with the events they get)
and react to ``on_add``/``on_update``/``on_delete`` handlers, which should only enqueue keys:
handlers run in the informer's task, so slow work there delays every other listener.

The loop is the reflector's: list (resourceVersion of the list), replace the cache (emitting
adds, updates and deletes for the difference), then watch from that version with bookmarks.
A watch that ends is resumed from the last version seen; a 410 Expired means the history is
gone and the informer lists again. Every ``resync_period`` seconds each cached object is
delivered again as an update (old is new), so level-driven controllers retry what an
earlier event did not fix.

Objects are the wire-format dicts the API sends; treat them as read-only (copy before
changing and writing back), exactly like client-go's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kybern.client import ApiClient, ApiError
from loguru import logger

log = logger.bind(component="informers")

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]

#: the index every namespaced informer gets (client-go's cache.NamespaceIndex)
NAMESPACE_INDEX = "namespace"


def object_key(obj: Obj) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of ``object_key``: (namespace or None, name)."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, ns)


def index_by_namespace(obj: Obj) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def index_by_node_name(obj: Obj) -> list[str]:
    """Pods by ``spec.nodeName`` (kubelets, node lifecycle, DaemonSets)."""
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def index_by_owner_uid(obj: Obj) -> list[str]:
    """Objects by the UID of each owner (garbage collection, adoption)."""
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if ref.get("uid")]


def index_by_controller_uid(obj: Obj) -> list[str]:
    """Objects by the UID of their controlling owner only."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid"):
            return [ref["uid"]]
    return []


class Indexer:
    """The cache: objects by key, plus secondary indices (name -> value -> keys)."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._funcs: dict[str, IndexFunc] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._funcs}

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        for name, func in indexers.items():
            if name in self._funcs:
                continue
            self._funcs[name] = func
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in func(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._funcs.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _index(self, key: str, obj: Obj) -> None:
        for name, func in self._funcs.items():
            index = self._indices[name]
            for value in func(obj):
                index.setdefault(value, set()).add(key)

    def put(self, obj: Obj) -> Obj | None:
        """Store ``obj``; returns the previous version (None if new)."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self._items.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def by_index(self, index: str, value: str) -> list[Obj]:
        if index not in self._indices:
            raise KeyError(f"no index {index!r}")
        return [self._items[k] for k in self._indices[index].get(value, ()) if k in self._items]

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Handler:
    on_add: Callable[[Obj], None] | None
    on_update: Callable[[Obj, Obj], None] | None
    on_delete: Callable[[Obj], None] | None


class SharedInformer:
    """List+watch of one resource (optionally one namespace/selector) into an ``Indexer``."""

    def __init__(
        self,
        client: ApiClient,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float = 0.0,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.store = Indexer({NAMESPACE_INDEX: index_by_namespace})
        self.last_resource_version: str | None = None
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SharedInformer({self.resource!r}, namespace={self.namespace!r})"

    # --- registration -------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        """Listen for changes. A handler added after sync first gets adds for the cache."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self._synced.is_set() and on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.store.add_indexers(indexers)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    def start(self) -> None:
        """Begin list+watch in a background task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer {self.resource}")
            if self.resync_period > 0:
                self._resync_task = asyncio.create_task(self._resync_loop(), name=f"resync {self.resource}")

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """True once the first list is in the cache (False on timeout)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._resync_task = None

    # --- the reflector ------------------------------------------------------------------------

    def _call(self, func: Callable[..., None], *args: Obj) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("{} handler failed", self.resource)

    def _dispatch_add(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _replace(self, items: list[Obj]) -> None:
        """Make the cache equal to a fresh list, telling listeners what changed meanwhile."""
        fresh = {object_key(o): o for o in items}
        for key in self.store.keys():
            if key not in fresh:
                old = self.store.remove(key)
                if old is not None:
                    self._dispatch_delete(old)
        for obj in items:
            old = self.store.put(obj)
            if old is None:
                self._dispatch_add(obj)
            else:
                self._dispatch_update(old, obj)

    def _apply(self, type_: str, obj: Obj) -> None:
        if type_ == "DELETED":
            self.store.remove(object_key(obj))
            self._dispatch_delete(obj)
            return
        old = self.store.put(obj)
        if old is None:
            self._dispatch_add(obj)
        else:
            self._dispatch_update(old, obj)

    async def _list(self) -> None:
        listing = await self.client.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self.last_resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        self._replace(list(listing.get("items") or []))
        self._synced.set()

    async def _watch(self) -> bool:
        """Follow changes from the last version; False when the informer must list again."""
        async for event in self.client.watch(
            self.resource,
            namespace=self.namespace,
            resource_version=self.last_resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=random.randint(300, 600),
            allow_bookmarks=True,
        ):
            obj = event.object
            if event.type == "ERROR":
                code = obj.get("code")
                log.debug("{} watch error {}: {}", self.resource, code, obj.get("message"))
                if code == 410:
                    return False
                await asyncio.sleep(1.0)  # a server-side failure: do not hammer it
                return True
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if event.type != "BOOKMARK":
                self._apply(event.type, obj)
            if rv:
                self.last_resource_version = rv
        return True

    async def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                started = time.monotonic()
                need_list = not await self._watch()
                if time.monotonic() - started < 1.0:
                    # a stream that ends at once (proxy, restarting server): back off
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                else:
                    backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.code == 410:
                    need_list = True
                    continue
                log.warning("{} list/watch failed: {}", self.resource, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # connection refused, reset...: retry like the reflector
                log.debug("{} list/watch interrupted: {!r}", self.resource, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _resync_loop(self) -> None:
        await self._synced.wait()
        while True:
            await asyncio.sleep(self.resync_period)
            for obj in self.store.list():
                self._dispatch_update(obj, obj)


class SharedInformerFactory:
    """One informer per (resource, namespace) for every controller in a process.

    Controllers ask for informers while they are built, then the factory's owner calls
    ``start()`` and ``wait_for_sync()`` once; informers requested later start right away.
    """

    def __init__(self, client: ApiClient, resync_period: float = 0.0) -> None:
        self.client = client
        self.resync_period = resync_period
        self._informers: dict[tuple[str, str | None, str | None, str | None], SharedInformer] = {}
        self._started = False
        self._trackers: list[list[SharedInformer]] = []

    def informer(
        self,
        resource: str,
        namespace: str | None = None,
        resync_period: float | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> SharedInformer:
        """The shared informer for ``resource`` (kubectl-style name: ``pods``,
        ``replicasets.apps``), one per (resource, namespace, selectors)."""
        key = (resource, namespace, label_selector or None, field_selector or None)
        inf = self._informers.get(key)
        if inf is None:
            period = self.resync_period if resync_period is None else resync_period
            inf = SharedInformer(
                self.client,
                resource,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                resync_period=period,
            )
            self._informers[key] = inf
            if self._started:
                inf.start()
        for tracker in self._trackers:
            if inf not in tracker:
                tracker.append(inf)
        return inf

    @contextlib.contextmanager
    def track(self) -> Iterator[list[SharedInformer]]:
        """Collect the informers requested inside the block (e.g. while building one
        controller), so its owner can wait for exactly those to sync before running it."""
        requested: list[SharedInformer] = []
        self._trackers.append(requested)
        try:
            yield requested
        finally:
            self._trackers.remove(requested)

    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        results = await asyncio.gather(*(i.wait_for_sync(timeout) for i in self._informers.values()))
        return all(results)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
        self._started = False
