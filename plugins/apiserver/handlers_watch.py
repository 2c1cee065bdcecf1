"""Watch: a chunked stream of ``{"type": ..., "object": ...}`` lines served from the watch cache.

Semantics follow kube's cacher: initial ADDED events only when resourceVersion is unset or
"0" (or sendInitialEvents=true), replay from the cache's ring for an older resourceVersion,
one 410 Expired ERROR event when the ring no longer reaches back that far, and selector
transitions turned into ADDED/DELETED (an object leaving the selection is DELETED for this
watcher). Table watches send one-row Tables; only the first carries columnDefinitions.
"""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from kybern.plugins.apiserver import bodies, errors, tables
from kybern.plugins.apiserver.cache import CacheEvent, Watcher
from kybern.plugins.apiserver.handlers_rest import match_all, object_matcher, parse_rv

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer, RequestInfo

BOOKMARK_INTERVAL = float(os.environ.get("KYBERN_WATCH_BOOKMARK_SECONDS", "30"))
DEFAULT_TIMEOUT = 1800.0
LIVENESS_CHECK = 5.0


def _pass(ev: CacheEvent) -> CacheEvent | None:
    return ev


def _make_filter(match: Any) -> Any:
    if match is match_all:
        return _pass  # no selector: nothing to decode per event

    def filt(ev: CacheEvent) -> CacheEvent | None:
        if ev.type == "ADDED":
            return ev if match(ev.obj.obj) else None
        if ev.type == "DELETED":
            return ev if match((ev.prev or ev.obj).obj) else None
        new_ok = match(ev.obj.obj)
        old_ok = ev.prev is not None and match(ev.prev.obj)
        if new_ok and old_ok:
            return ev
        if new_ok:
            return CacheEvent("ADDED", ev.obj, None, ev.rev)
        if old_ok:
            return CacheEvent("DELETED", ev.obj, ev.prev, ev.rev)
        return None

    return filt


async def watch(srv: ApiServer, info: RequestInfo) -> web.StreamResponse:
    rt, t = info.rt, info.target
    request = info.request
    rv_text = info.q("resourceVersion")
    rv = parse_rv(rv_text)
    timeout_text = info.q("timeoutSeconds")
    timeout = DEFAULT_TIMEOUT * (1 + random.random())
    if timeout_text not in (None, ""):
        try:
            timeout = float(int(timeout_text))  # type: ignore[arg-type]
        except ValueError:
            raise errors.bad_request(f'timeoutSeconds: Invalid value: "{timeout_text}"') from None
    bookmarks = info.flag("allowWatchBookmarks") if "allowWatchBookmarks" in request.query else False
    send_initial_text = info.q("sendInitialEvents")
    send_initial = send_initial_text is not None and send_initial_text.lower() == "true"
    if send_initial_text is not None and not (bookmarks and info.q("resourceVersionMatch") == "NotOlderThan"):
        raise errors.bad_request(
            "sendInitialEvents: Forbidden: sendInitialEvents requires allowWatchBookmarks=true and "
            "resourceVersionMatch=NotOlderThan"
        )
    output = info.output()
    table = output == "table"
    include = info.include_object()
    match = object_matcher(info)
    prefix = srv.registry.key_prefix(rt, t.namespace)
    cache = srv.cache
    if rv is not None and rv > cache.revision:
        await cache.wait_for(rv, 3.0)
    rc = cache.cache_for(rt)
    filt = _make_filter(match)
    initial: list[CacheEvent] = []
    expired = False
    # no await between here and add_watcher: the snapshot and the live stream meet exactly
    if rv is None or rv == 0 or send_initial:
        for obj in rc.snapshot(prefix):
            if match(obj.obj):
                initial.append(CacheEvent("ADDED", obj, None, obj.rev))
    else:
        replay = rc.events_since(rv)
        if replay is None:
            expired = True
        else:
            for ev in replay:
                if ev.obj.key.startswith(prefix):
                    out = filt(ev)
                    if out is not None:
                        initial.append(out)
    start_rev = cache.revision
    watcher = Watcher(prefix, filt)
    if not expired:
        cache.add_watcher(rt, watcher)
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        if expired:
            status = errors.expired(f"too old resource version: {rv} ({rc.oldest_servable + 1})").status()
            await resp.write(bodies.dumps({"type": "ERROR", "object": status}) + b"\n")
            return resp
        state = {"columns": True}

        def encode(ev: CacheEvent) -> bytes:
            if table:
                obj = tables.table(
                    rt, [ev.obj.obj], {"resourceVersion": str(ev.rev)}, include, state["columns"]
                )
                state["columns"] = False
                return bodies.dumps({"type": ev.type, "object": obj}) + b"\n"
            if output == "metadata":
                return bodies.dumps({"type": ev.type, "object": tables.partial_metadata(ev.obj.obj)}) + b"\n"
            return b'{"type":"' + ev.type.encode() + b'","object":' + ev.obj.raw + b"}\n"

        def bookmark(rev: int, initial_end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rev)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return (
                bodies.dumps(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta},
                    }
                )
                + b"\n"
            )

        if initial:
            await resp.write(b"".join(encode(ev) for ev in initial))
        last_rev = max([start_rev] + [ev.rev for ev in initial])
        if send_initial and bookmarks:
            await resp.write(bookmark(start_rev, True))
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        queue = watcher.queue
        while True:
            now = time.monotonic()
            if now >= deadline or srv.stopping.is_set():
                break
            # wake now and then to notice a client that went away without a write failing
            wait = min(deadline - now, LIVENESS_CHECK)
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0.01))
            if not await queue.wait(wait):
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                # only with nothing queued: the bookmark promises every event up to its revision
                if bookmarks and time.monotonic() >= next_bookmark and queue.empty():
                    await resp.write(bookmark(max(last_rev, cache.revision)))
                    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
                continue
            ev = queue.get_nowait()
            if ev is None:
                break
            chunk = [ev]
            while not queue.empty() and len(chunk) < 200:
                more = queue.get_nowait()
                if more is None:
                    queue.put_nowait(None)
                    break
                chunk.append(more)
            for e in chunk:
                last_rev = max(last_rev, e.rev)
            if chunk:
                await resp.write(b"".join(encode(e) for e in chunk))
    except ConnectionResetError:
        pass
    finally:
        cache.remove_watcher(rt, watcher)
        watcher.queue.close()
    return resp
