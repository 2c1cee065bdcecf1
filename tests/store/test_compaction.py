"""Compaction: history at or below a revision goes, live values and later history stay."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from kybern.plugins.sqlstore import SqlStore
from kybern.plugins.sqlstore.schema import kv
from kybern.store import CompactedError, FutureRevisionError, KeyValue

P = "/registry/leases/kube-system/"


def rows(store: SqlStore) -> int:
    with store._reader.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(kv)).scalar_one())


def test_compact_keeps_state_at_revision_and_later_history(store: SqlStore) -> None:
    a = store.create(P + "a", b"a1")
    b = store.create(P + "b", b"b1")
    store.update(P + "a", b"a2")
    store.delete(P + "b")
    c = store.create(P + "c", b"c1")
    at = store.current_revision()
    a3 = store.update(P + "a", b"a3")
    assert rows(store) == 6
    removed = store.compact(at)
    # a1 (replaced by a2), b1 and its delete go; a2 stays (state at `at`), c1 and a3 stay
    assert removed == 3
    assert rows(store) == 3
    assert store.compacted_revision() == at
    assert [(x.key, x.value) for x in store.list(P, revision=at).items] == [
        (P + "a", b"a2"),
        (P + "c", b"c1"),
    ]
    assert store.get(P + "a") == KeyValue(P + "a", b"a3", a3, a)
    assert store.get(P + "c") == KeyValue(P + "c", b"c1", c, c)
    with pytest.raises(CompactedError):
        store.list(P, revision=b)
    assert store.compact(at) == 0  # already done
    with pytest.raises(FutureRevisionError):
        store.compact(store.current_revision() + 1)


def test_compacting_the_newest_delete_keeps_revisions_monotonic(store: SqlStore) -> None:
    store.create(P + "a", b"1")
    last = store.delete(P + "a").mod_revision
    store.compact(last)
    assert rows(store) == 0
    assert store.current_revision() == last
    again = store.create(P + "a", b"2")
    assert again == last + 1
    assert store.get(P + "a") == KeyValue(P + "a", b"2", again, again)


def test_compaction_in_batches(open_store: Callable[..., SqlStore]) -> None:
    store = open_store(compact_batch=7)
    for i in range(10):
        store.create(f"{P}k{i}", b"v")
    for round_ in range(3):
        for i in range(10):
            store.update(f"{P}k{i}", str(round_).encode())
    removed = store.compact(store.current_revision())
    assert removed == 30
    assert rows(store) == 10
    assert {x.value for x in store.list(P).items} == {b"2"}


def test_automatic_compaction_keeps_retained_history(open_store: Callable[..., SqlStore]) -> None:
    store = open_store(compact_interval=0.2, compact_retain=5)
    store.create(P + "a", b"0")
    for i in range(30):
        store.update(P + "a", str(i).encode())
    deadline = time.monotonic() + 20
    while store.compacted_revision() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    compacted = store.compacted_revision()
    assert 0 < compacted <= store.current_revision() - 5
    # the retained history can still be watched
    watch = store.watch(P, store.current_revision() - 5)
    assert [watch.get(5).revision for _ in range(5)] == list(  # type: ignore[union-attr]
        range(store.current_revision() - 4, store.current_revision() + 1)
    )
