"""Concurrent writers (threads and processes) never lose an acknowledged write, never share a
revision, and a watcher sees every write exactly once, in revision order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from kybern.plugins.sqlstore import SqlStore
from kybern.store import ConflictError, Event, EventType

WRITER = Path(__file__).with_name("writer_proc.py")
P = "/registry/pods/"


def drain(watch: object, n: int, timeout: float = 30.0) -> list[Event]:
    events: list[Event] = []
    while len(events) < n:
        event = watch.get(timeout)  # type: ignore[attr-defined]
        assert event is not None, f"watch stalled after {len(events)} of {n} events"
        events.append(event)
    return events


def check_log(events: list[Event], acked: dict[int, str]) -> None:
    """Every acknowledged write appears exactly once, with its key, in increasing order."""
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions)), "events out of order or duplicated"
    by_revision = {e.revision: e.kv.key for e in events}
    missing = {r: k for r, k in acked.items() if by_revision.get(r) != k}
    assert not missing, f"acknowledged writes missing from the watch: {list(missing.items())[:5]}"


def test_threads_never_share_a_revision_and_watch_sees_all(open_store: Callable[..., SqlStore]) -> None:
    store = open_store(pool_size=4)
    watch = store.watch(P, store.current_revision())
    writers, per_writer = 6, 40
    acked: dict[int, str] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                key = f"{P}w{w}/{i}"
                rev = store.create(key, b"v")
                rev2 = store.update(key, b"v2", expected_revision=rev)
                with lock:
                    assert rev not in acked and rev2 not in acked
                    acked[rev] = key
                    acked[rev2] = key
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(acked) == writers * per_writer * 2
    events = drain(watch, len(acked))
    check_log(events, acked)
    assert watch.get(0.3) is None
    assert store.count(P) == writers * per_writer


def test_compare_and_swap_counter_under_contention(open_store: Callable[..., SqlStore]) -> None:
    """Optimistic concurrency: N threads incrementing one key never lose an increment."""
    store = open_store(pool_size=4)
    key = "/registry/counters/c"
    store.create(key, b"0")
    threads_n, increments = 4, 25

    def bump() -> None:
        done = 0
        while done < increments:
            current = store.get(key)
            assert current is not None
            try:
                store.update(
                    key, str(int(current.value) + 1).encode(), expected_revision=current.mod_revision
                )
                done += 1
            except ConflictError:
                continue

    threads = [threading.Thread(target=bump) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get(key)
    assert final is not None and int(final.value) == threads_n * increments


def _spawn(url: str, prefix: str, count: int, stderr: Path) -> subprocess.Popen[str]:
    """Start a writer and wait until its store is open. Read its stdout only through
    ``proc.stdout`` afterwards (``communicate()`` would skip what readline buffered)."""
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), url, prefix, str(count)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert proc.stdout is not None
    return proc


def _start(*procs: subprocess.Popen[str]) -> None:
    """Wait until every writer is ready, then let them all go."""
    for proc in procs:
        assert proc.stdout is not None and proc.stdin is not None
        first = proc.stdout.readline().strip()
        assert first == "ready", f"writer did not start: {first!r}"
    for proc in procs:
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]


def _acks(lines: list[str]) -> dict[int, str]:
    acked: dict[int, str] = {}
    for line in lines:
        if line.endswith("\n"):  # a line cut short by kill -9 was not fully acknowledged
            rev, key = line.split()
            assert int(rev) not in acked, f"revision {rev} acknowledged twice"
            acked[int(rev)] = key
    return acked


def test_processes_share_the_database(
    store_url: str, open_store: Callable[..., SqlStore], tmp_path: Path
) -> None:
    store = open_store()
    watch = store.watch(P, store.current_revision())
    procs = [_spawn(store_url, f"{P}proc{n}/", 40, tmp_path / f"writer{n}.err") for n in range(4)]
    _start(*procs)
    # this process writes at the same time
    own = {store.create(f"{P}parent/{i}", b"p"): f"{P}parent/{i}" for i in range(40)}
    acked: dict[int, str] = dict(own)
    for n, proc in enumerate(procs):
        assert proc.stdout is not None
        lines = proc.stdout.readlines()
        assert proc.wait(timeout=120) == 0, (tmp_path / f"writer{n}.err").read_text()
        for rev, key in _acks(lines).items():
            assert rev not in acked, f"revision {rev} given to two writers"
            acked[rev] = key
    assert len(acked) == 5 * 40
    events = drain(watch, len(acked))
    check_log(events, acked)
    assert all(e.type is EventType.PUT and e.prev is None for e in events)
    assert store.count(P) == len(acked)


def test_kill_9_writer_loses_no_acknowledged_write(
    store_url: str, open_store: Callable[..., SqlStore], tmp_path: Path
) -> None:
    open_store()  # the schema exists before the victim starts
    proc = _spawn(store_url, f"{P}victim/", 0, tmp_path / "victim.err")
    _start(proc)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(150)]
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines += rest.splitlines(keepends=True)
    acked = _acks(lines)
    assert len(acked) >= 150
    # a fresh store (new connections, as after a restart) sees every acknowledged write
    fresh = open_store()
    for rev, key in acked.items():
        found = fresh.get(key)
        assert found is not None and found.mod_revision == rev, f"lost acknowledged write {key}@{rev}"
    # and the database is still usable for writes and watches
    watch = fresh.watch(P, fresh.current_revision())
    after = fresh.create(f"{P}after-crash", b"ok")
    assert after > max(acked)
    (event,) = drain(watch, 1)
    assert event.revision == after


def test_interleaved_writes_of_two_stores_reach_both_watchers(open_store: Callable[..., SqlStore]) -> None:
    """Two store instances on one database behave like two processes: each one's own writes
    take the fast path, the other's arrive through the poller, and gaps between them must
    neither reorder nor drop nor duplicate events."""
    a, b = open_store(poll_interval=0.02), open_store(poll_interval=0.02)
    start = a.current_revision()
    watch_a, watch_b = a.watch(P, start), b.watch(P, start)
    acked: dict[int, str] = {}
    errors: list[BaseException] = []

    def write(store: SqlStore, name: str) -> None:
        try:
            for i in range(60):
                key = f"{P}{name}/{i}"
                acked[store.create(key, b"v")] = key
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for s, n in ((a, "a"), (b, "b"), (a, "a2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for watch in (watch_a, watch_b):
        check_log(drain(watch, len(acked)), acked)
        assert watch.get(0.2) is None


def test_processes_migrating_a_fresh_database_at_once(store_url: str, tmp_path: Path) -> None:
    """Several servers starting together on an empty database: one creates the schema, the
    others wait for it (SQLite's write lock, PostgreSQL's advisory lock) instead of failing."""
    procs = [_spawn(store_url, f"{P}boot{n}/", 5, tmp_path / f"boot{n}.err") for n in range(3)]
    _start(*procs)
    revisions: set[int] = set()
    for n, proc in enumerate(procs):
        assert proc.stdout is not None
        lines = proc.stdout.readlines()
        assert proc.wait(timeout=120) == 0, (tmp_path / f"boot{n}.err").read_text()
        revisions |= set(_acks(lines))
    assert revisions == set(range(1, 16))
