"""Watches: every change after a revision, in order, exactly once, with previous values."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from kybern.plugins.sqlstore import SqlStore
from kybern.plugins.sqlstore.watch import WatchOverflowError
from kybern.store import CompactedError, Event, EventType, KeyValue, StoreError

P = "/registry/configmaps/default/"


def take(watch: object, n: int, timeout: float = 10.0) -> list[Event]:
    """The next n events; fails the test if they do not all arrive."""
    events = []
    for _ in range(n):
        event = watch.get(timeout)  # type: ignore[attr-defined]
        assert event is not None, f"only {len(events)} of {n} events arrived: {events}"
        events.append(event)
    return events


def test_events_carry_values_and_previous_values(store: SqlStore) -> None:
    watch = store.watch(P, store.current_revision())
    r1 = store.create(P + "a", b"1")
    r2 = store.update(P + "a", b"2")
    r3 = store.delete(P + "a").mod_revision
    create, update, delete = take(watch, 3)
    assert create == Event(EventType.PUT, KeyValue(P + "a", b"1", r1, r1), None, r1)
    assert create.is_create
    assert update == Event(
        EventType.PUT, KeyValue(P + "a", b"2", r2, r1), KeyValue(P + "a", b"1", r1, r1), r2
    )
    assert not update.is_create
    assert delete == Event(
        EventType.DELETE, KeyValue(P + "a", b"2", r3, r1), KeyValue(P + "a", b"2", r2, r1), r3
    )
    assert watch.get(0.2) is None
    watch.close()


def test_prefix_filter(store: SqlStore) -> None:
    watch = store.watch(P, 0)
    store.create("/registry/configmaps/default2/x", b"no")
    store.create("/registry/secrets/default/a", b"no")
    rev = store.create(P + "a", b"yes")
    (event,) = take(watch, 1)
    assert event.revision == rev
    assert watch.get(0.2) is None


def test_watch_from_old_revision_replays_history_then_live(store: SqlStore) -> None:
    revs = [store.create(f"{P}k{i}", str(i).encode()) for i in range(5)]
    revs.append(store.update(P + "k0", b"again"))
    # let the poller move past the history so the watch has to catch up from the database
    store._hub.wait_until(revs[-1], timeout=5)
    watch = store.watch(P, revs[1])
    live = store.create(P + "live", b"x")
    events = take(watch, 5)
    assert [e.revision for e in events] == [*revs[2:], live]
    assert events[3].prev == KeyValue(P + "k0", b"0", revs[0], revs[0])
    assert watch.get(0.2) is None


def test_watch_from_future_revision_waits(store: SqlStore) -> None:
    watch = store.watch(P, 2)
    store.create(P + "a", b"1")
    store.create(P + "b", b"1")
    r3 = store.create(P + "c", b"1")
    (event,) = take(watch, 1)
    assert event.revision == r3


def test_many_watchers_each_get_everything(store: SqlStore) -> None:
    watches = [store.watch(P, 0) for _ in range(5)]
    revs = [store.create(f"{P}k{i}", b"v") for i in range(20)]
    for watch in watches:
        assert [e.revision for e in take(watch, 20)] == revs


def test_compacted_revision_cannot_be_watched(store: SqlStore) -> None:
    for i in range(5):
        store.create(f"{P}k{i}", b"v")
    store.update(P + "k0", b"w")
    store.compact(4)
    with pytest.raises(CompactedError) as err:
        store.watch(P, 3)
    assert err.value.compacted == 4
    watch = store.watch(P, 4)  # exactly at the compacted revision: history after it is intact
    assert [e.revision for e in take(watch, 2)] == [5, 6]


def test_close_ends_iteration(store: SqlStore) -> None:
    watch = store.watch(P, 0)
    got: list[Event] = []
    done = threading.Event()

    def consume() -> None:
        got.extend(watch)
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    store.create(P + "a", b"1")
    for _ in range(100):
        if got:
            break
        done.wait(0.05)
    watch.close()
    assert done.wait(5)
    thread.join()
    assert [e.kv.key for e in got] == [P + "a"]
    assert watch.get(0) is None


def test_store_close_fails_open_watches(open_store: Callable[..., SqlStore]) -> None:
    store = open_store()
    watch = store.watch(P, 0)
    store.close()
    with pytest.raises(StoreError):
        watch.get(1)
    with pytest.raises(StoreError):
        store.watch(P, 0)


def test_slow_watcher_gets_error_not_unbounded_queue(open_store: Callable[..., SqlStore]) -> None:
    store = open_store(watch_queue_size=10)
    slow = store.watch(P, 0)
    fast = store.watch(P, 0)
    for i in range(30):
        store.create(f"{P}k{i}", b"v")
        assert fast.get(5) is not None
    with pytest.raises(WatchOverflowError, match="fell more than 10 events behind") as err:
        for _ in range(30):
            slow.get(5)
    assert isinstance(err.value, StoreError)  # what the API server catches
    assert len(slow._queue) == 0  # the backlog was dropped, not kept
    assert slow not in store._hub._watchers  # and the hub no longer feeds it
    store.create(P + "after", b"v")
    assert fast.get(5) is not None


def test_history_compacted_by_another_process_ends_watch_with_error(
    open_store: Callable[..., SqlStore], store_url: str
) -> None:
    """A poller that has not read rows another process compacted away must say so, never
    skip them silently."""
    lagging = open_store(poll_interval=60)  # only woken by its own writes (and NOTIFY)
    other = open_store()
    watch = lagging.watch(P, lagging.current_revision())
    revs = [other.create(P + "k", b"0")] + [other.update(P + "k", str(i).encode()) for i in range(5)]
    other.compact(revs[-1])
    revs.append(other.update(P + "k", b"last"))
    lagging._hub.wake()
    got: list[int] = []
    error: CompactedError | None = None
    try:
        while len(got) < len(revs):
            event = watch.get(10)
            assert event is not None, "watch stalled without an error"
            got.append(event.revision)
    except CompactedError as exc:
        error = exc
    assert got == revs[: len(got)]
    if store_url.startswith("sqlite"):
        # no NOTIFY on SQLite: the poller slept through every write, so it must report the gap
        assert error is not None and got == []
    else:
        # NOTIFY may have woken the poller in time to read everything; if not, it must say so
        assert error is not None or got == revs
    # a new watch from the compacted revision works
    fresh = lagging.watch(P, lagging.compacted_revision())
    assert [e.revision for e in take(fresh, 1)] == [revs[-1]]
