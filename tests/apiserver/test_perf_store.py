"""The store features the API server's fast paths rely on (SQLite, a real database file).

- ``SqlWatch.on_ready`` calls back when events become available (once per batch, on the
  writer's thread), so the API server's watch cache takes them on its event loop with no
  thread blocked in ``get``;
- ``SqlStore.inline_lock``: a thread holding it may write (the lock is re-entrant), and while
  another thread writes it is busy, so the API server falls back to its worker threads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kybern.plugins.sqlstore import SqlStore
from kybern.store import StoreError


def _store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'state.db'}", compact_interval=0)


def test_watch_on_ready_signals_once_per_batch(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        before = store.create("/registry/early", b"0")
        w = store.watch("/registry/", before - 1)
        calls: list[int] = []
        w.on_ready(lambda: calls.append(threading.get_ident()))
        assert calls, "an event was already waiting: on_ready calls back at once"
        assert w.get(timeout=0).revision == before  # type: ignore[union-attr]
        assert w.get(timeout=0) is None
        calls.clear()

        rev1 = store.create("/registry/a", b"1")
        rev2 = store.create("/registry/b", b"2")
        # one call when the queue became non-empty; the second write found it non-empty
        assert calls == [threading.get_ident()]
        first, second = w.get(timeout=0), w.get(timeout=0)
        assert first is not None and second is not None
        assert (first.revision, second.revision) == (rev1, rev2)
        assert w.get(timeout=0) is None

        # a write from another thread calls back on that thread
        t = threading.Thread(target=lambda: store.update("/registry/a", b"3"))
        t.start()
        t.join(10)
        assert len(calls) == 2 and calls[1] != threading.get_ident()
        ev = w.get(timeout=0)
        assert ev is not None and ev.kv.value == b"3"

        # other prefixes do not call back
        other = store.watch("/other/", store.current_revision())
        other_calls: list[int] = []
        other.on_ready(lambda: other_calls.append(1))
        store.create("/registry/c", b"4")
        assert other_calls == []
        other.close()
        w.close()
    finally:
        store.close()


def test_watch_on_ready_reports_the_end_of_the_watch(tmp_path: Path) -> None:
    store = _store(tmp_path)
    w = store.watch("/registry/", store.current_revision())
    calls: list[bool] = []
    w.on_ready(lambda: calls.append(True))
    store.close()  # ends every watch with an error
    assert calls == [True]
    with pytest.raises(StoreError):
        w.get(timeout=0)


def test_inline_lock_is_reentrant_and_busy_while_another_thread_writes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        lock = store.inline_lock
        assert lock is not None
        with lock:  # the holder writes through the store's own locking
            rev = store.create("/registry/x", b"1")
        assert store.get("/registry/x").mod_revision == rev  # type: ignore[union-attr]

        holding, release = threading.Event(), threading.Event()

        def other_writer() -> None:
            with lock:
                holding.set()
                release.wait(10)

        t = threading.Thread(target=other_writer)
        t.start()
        assert holding.wait(10)
        try:
            assert lock.acquire(blocking=False) is False
        finally:
            release.set()
            t.join(10)
        assert lock.acquire(blocking=False) is True
        lock.release()
    finally:
        store.close()


def test_wal_is_checkpointed_off_the_writers_path(tmp_path: Path) -> None:
    """Writers leave checkpoints to the store's own thread (the API server writes on its
    event loop, where a checkpoint's fsyncs would stall every request)."""
    store = _store(tmp_path)
    db = tmp_path / "state.db"
    try:
        raw = store._writer.raw_connection()
        try:
            assert raw.cursor().execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 1000
        finally:
            raw.close()
        for i in range(300):  # ~1.5k WAL frames: below the writers' checkpoint threshold
            store.create(f"/registry/configmaps/ns/c{i}", b"x" * 2000)
        deadline = time.monotonic() + 10
        while db.stat().st_size < 300 * 2000 and time.monotonic() < deadline:
            time.sleep(0.1)
        # the rows reached the database file itself: the checkpointer copied the WAL
        assert db.stat().st_size >= 300 * 2000
        assert store.get("/registry/configmaps/ns/c299") is not None
    finally:
        store.close()


def _drain(w: object) -> list[tuple[int, bytes]]:
    out = []
    while (ev := w.get(timeout=0)) is not None:  # type: ignore[attr-defined]
        out.append((ev.revision, ev.kv.value))
    return out


def test_group_commit_publishes_its_writes_once_they_committed(tmp_path: Path) -> None:
    """Writes inside a group share one transaction: nobody sees them before commit_group
    (neither a watcher nor another connection), another thread's write waits for it, and the
    watchers then get them in revision order."""
    store = _store(tmp_path)
    try:
        store.create("/registry/b", b"0")
        w = store.watch("/registry/", store.current_revision())
        with store.inline_lock:
            assert store.begin_group() is True
            assert store.begin_group() is False  # one group at a time
            r1 = store.create("/registry/a", b"1")
            r2 = store.update("/registry/a", b"2", r1)
            r3 = store.update("/registry/b", b"3")
        assert (r1, r2, r3) == (r1, r1 + 1, r1 + 2)
        assert _drain(w) == []
        # the reader engine's snapshot: only committed rows
        assert [kv.key for kv in store.list("/registry/").items] == ["/registry/b"]

        done: list[int] = []
        other = threading.Thread(target=lambda: done.append(store.create("/registry/c", b"4")))
        other.start()
        other.join(0.3)
        assert done == [], "another thread's write waits for the group's transaction"

        assert store.commit_group() == 3
        other.join(10)
        assert done == [r3 + 1]
        assert _drain(w) == [(r1, b"1"), (r2, b"2"), (r3, b"3"), (r3 + 1, b"4")]
        assert store.get("/registry/a").value == b"2"  # type: ignore[union-attr]
        assert store.commit_group() == 0  # none open
    finally:
        store.close()


def test_a_refused_write_leaves_the_rest_of_its_group(tmp_path: Path) -> None:
    from kybern.store import ConflictError, KeyExistsError

    store = _store(tmp_path)
    try:
        old = store.create("/registry/b", b"0")
        w = store.watch("/registry/", store.current_revision())
        with store.inline_lock:
            assert store.begin_group()
            rev = store.create("/registry/a", b"1")
            with pytest.raises(KeyExistsError):
                store.create("/registry/a", b"again")
            with pytest.raises(ConflictError):
                store.update("/registry/b", b"stale", old + 99)
            rev2 = store.update("/registry/b", b"2", old)
        assert store.commit_group() == 2
        assert _drain(w) == [(rev, b"1"), (rev2, b"2")]
        assert store.get("/registry/a").value == b"1"  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_failed_write_fails_its_whole_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database error inside a group loses its transaction: every write of the group fails
    (none is stored or published), later ones are refused, and the store works afterwards."""
    from kybern.plugins.sqlstore import store as store_module
    from kybern.store import StoreUnavailableError

    store = _store(tmp_path)
    try:
        w = store.watch("/registry/", store.current_revision())
        insert = store_module._SQLITE_INSERT
        with store.inline_lock:
            assert store.begin_group()
            store.create("/registry/a", b"1")
            monkeypatch.setattr(
                store_module, "_SQLITE_INSERT", insert.replace("INSERT INTO kv", "INSERT INTO nokv")
            )
            with pytest.raises(StoreUnavailableError, match="no such table"):
                store.create("/registry/b", b"2")
            monkeypatch.setattr(store_module, "_SQLITE_INSERT", insert)
            with pytest.raises(StoreUnavailableError, match="no such table"):
                store.create("/registry/c", b"3")  # the group is lost: refused too
        with pytest.raises(StoreUnavailableError, match="no such table"):
            store.commit_group()
        assert _drain(w) == []
        assert store.get("/registry/a") is None
        rev = store.create("/registry/d", b"4")
        assert _drain(w) == [(rev, b"4")]
    finally:
        store.close()


def test_closing_with_a_group_open_commits_it_and_fails_its_waiters(tmp_path: Path) -> None:
    from kybern.store import StoreError

    store = _store(tmp_path)
    with store.inline_lock:
        assert store.begin_group()
        store.create("/registry/a", b"1")
    store.close()  # the group's thread closes the store (an API server stopping mid-turn)
    with pytest.raises(StoreError, match="closed"):
        store.commit_group()  # the loop's pending commit: its writers get an error, not success
    reopened = _store(tmp_path)
    try:
        assert reopened.get("/registry/a").value == b"1"  # type: ignore[union-attr]
    finally:
        reopened.close()
