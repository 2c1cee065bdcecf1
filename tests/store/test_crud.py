"""Create/update/delete/get/list semantics of the SQL store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from kybern.plugins.sqlstore import SqlStore
from kybern.store import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    InvalidContinueError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
)

P = "/registry/pods/default/"


def test_is_a_store(store: SqlStore) -> None:
    assert isinstance(store, Store)
    assert store.current_revision() == 0
    assert store.compacted_revision() == 0


def test_revisions_are_global_and_consecutive(store: SqlStore) -> None:
    a = store.create(P + "a", b"1")
    b = store.create("/registry/nodes/n1", b"2")
    c = store.update(P + "a", b"3")
    d = store.delete("/registry/nodes/n1")
    assert [a, b, c, d.mod_revision] == [1, 2, 3, 4]
    assert store.current_revision() == 4


def test_create_existing_key_fails_and_writes_nothing(store: SqlStore) -> None:
    rev = store.create(P + "a", b"1")
    with pytest.raises(KeyExistsError) as err:
        store.create(P + "a", b"2")
    assert err.value.key == P + "a"
    assert store.get(P + "a") == KeyValue(P + "a", b"1", rev, rev)
    assert store.current_revision() == rev


def test_update_checks_expected_revision(store: SqlStore) -> None:
    first = store.create(P + "a", b"1")
    second = store.update(P + "a", b"2", expected_revision=first)
    with pytest.raises(ConflictError) as err:
        store.update(P + "a", b"3", expected_revision=first)
    assert (err.value.expected, err.value.actual) == (first, second)
    assert store.get(P + "a") == KeyValue(P + "a", b"2", second, first)
    third = store.update(P + "a", b"4")  # no precondition
    assert store.get(P + "a") == KeyValue(P + "a", b"4", third, first)


def test_update_or_delete_missing_key(store: SqlStore) -> None:
    with pytest.raises(KeyNotFoundError):
        store.update(P + "nope", b"x")
    with pytest.raises(KeyNotFoundError):
        store.delete(P + "nope")
    store.create(P + "a", b"1")
    store.delete(P + "a")
    with pytest.raises(KeyNotFoundError):
        store.update(P + "a", b"x")
    with pytest.raises(KeyNotFoundError):
        store.delete(P + "a")


def test_delete_returns_last_value_at_delete_revision(store: SqlStore) -> None:
    created = store.create(P + "a", b"1")
    updated = store.update(P + "a", b"2")
    with pytest.raises(ConflictError):
        store.delete(P + "a", expected_revision=created)
    gone = store.delete(P + "a", expected_revision=updated)
    assert gone == KeyValue(P + "a", b"2", updated + 1, created)
    assert store.get(P + "a") is None


def test_recreate_after_delete_gets_new_create_revision(store: SqlStore) -> None:
    store.create(P + "a", b"1")
    store.delete(P + "a")
    again = store.create(P + "a", b"2")
    assert store.get(P + "a") == KeyValue(P + "a", b"2", again, again)
    updated = store.update(P + "a", b"3", expected_revision=again)
    assert store.get(P + "a") == KeyValue(P + "a", b"3", updated, again)


def test_binary_and_empty_values_round_trip(store: SqlStore) -> None:
    blob = bytes(range(256)) * 40
    store.create(P + "blob", blob)
    store.create(P + "empty", b"")
    assert store.get(P + "blob").value == blob  # type: ignore[union-attr]
    assert store.get(P + "empty").value == b""  # type: ignore[union-attr]


def test_get_at_revision(store: SqlStore) -> None:
    r1 = store.create(P + "a", b"1")
    r2 = store.update(P + "a", b"2")
    r3 = store.delete(P + "a").mod_revision
    assert store.get(P + "a", revision=r1) == KeyValue(P + "a", b"1", r1, r1)
    assert store.get(P + "a", revision=r2) == KeyValue(P + "a", b"2", r2, r1)
    assert store.get(P + "a", revision=r3) is None
    with pytest.raises(FutureRevisionError):
        store.get(P + "a", revision=r3 + 1)
    store.compact(r2)
    with pytest.raises(CompactedError):
        store.get(P + "a", revision=r1)


def test_list_by_prefix_sorted_by_code_point(store: SqlStore) -> None:
    keys = [P + "b", P + "a", P + "a-1", P + "Z", P + "é", P + "a.b", P + "日本"]
    for k in keys:
        store.create(k, k.encode())
    store.create("/registry/pods/default2/x", b"other namespace")
    store.create("/registry/pods/defaul", b"shorter key")
    result = store.list(P)
    assert [kv.key for kv in result.items] == sorted(keys)
    assert all(kv.value == kv.key.encode() for kv in result.items)
    assert result.revision == store.current_revision()
    assert result.continue_token is None
    assert store.count(P) == len(keys)
    assert len(store.list("").items) == len(keys) + 2
    assert store.list("/registry/pods/nothing/").items == []


def test_list_at_revision_sees_old_state(store: SqlStore) -> None:
    store.create(P + "a", b"1")
    store.create(P + "b", b"1")
    at = store.current_revision()
    store.update(P + "a", b"2")
    store.delete(P + "b")
    store.create(P + "c", b"1")
    old = store.list(P, revision=at)
    assert [(kv.key, kv.value) for kv in old.items] == [(P + "a", b"1"), (P + "b", b"1")]
    assert old.revision == at
    now = store.list(P)
    assert [(kv.key, kv.value) for kv in now.items] == [(P + "a", b"2"), (P + "c", b"1")]
    assert store.count(P) == 2
    with pytest.raises(FutureRevisionError):
        store.list(P, revision=store.current_revision() + 5)


def test_pagination_is_consistent_at_first_page_revision(store: SqlStore) -> None:
    keys = [f"{P}pod-{i:03d}" for i in range(25)]
    for k in keys:
        store.create(k, b"v1")
    page = store.list(P, limit=10)
    at = page.revision
    assert [kv.key for kv in page.items] == keys[:10]
    assert page.remaining == 15
    # writes between pages must not show up in later pages
    store.update(keys[15], b"v2")
    store.delete(keys[20])
    store.create(P + "pod-999", b"new")
    seen = [kv.key for kv in page.items]
    while page.continue_token:
        page = store.list(P, limit=10, continue_token=page.continue_token)
        assert page.revision == at
        seen += [kv.key for kv in page.items]
        assert all(kv.value == b"v1" for kv in page.items)
    assert seen == keys
    assert page.remaining is None


def test_continue_token_errors(store: SqlStore) -> None:
    for i in range(4):
        store.create(f"{P}p{i}", b"x")
    page = store.list(P, limit=2)
    assert page.continue_token
    with pytest.raises(InvalidContinueError):
        store.list(P, limit=2, continue_token="not-a-token!")
    with pytest.raises(InvalidContinueError):
        store.list("/registry/services/", limit=2, continue_token=page.continue_token)
    store.update(P + "p0", b"y")
    store.compact(store.current_revision())
    with pytest.raises(CompactedError):
        store.list(P, limit=2, continue_token=page.continue_token)


def test_limit_exactly_matching_has_no_token(store: SqlStore) -> None:
    for i in range(3):
        store.create(f"{P}p{i}", b"x")
    page = store.list(P, limit=3)
    assert len(page.items) == 3
    assert page.continue_token is None


def test_database_rejects_two_writes_from_the_same_previous_revision(store: SqlStore) -> None:
    """The (name, prev_revision) constraint catches a lost race even past the writer lock."""
    import sqlalchemy as sa
    from kybern.plugins.sqlstore.schema import kv

    rev = store.create(P + "a", b"1")
    store.update(P + "a", b"2", expected_revision=rev)
    row = {"name": P + "a", "created": False, "deleted": False, "create_revision": rev}
    with pytest.raises(sa.exc.IntegrityError), store._writer.begin() as conn:
        conn.execute(kv.insert(), {**row, "prev_revision": rev, "value": b"racer", "old_value": b"1"})


def test_failed_writes_leave_no_transaction_behind(store: SqlStore) -> None:
    """Each refused write (exists, missing, stale) rolls back at once: the writer's connection
    is reused by the next write (SQLite writes go through one DBAPI connection), which must
    not find a transaction still open or the write lock still held."""
    rev = store.create(P + "x", b"1")
    for _ in range(3):
        with pytest.raises(KeyExistsError):
            store.create(P + "x", b"again")
        with pytest.raises(KeyNotFoundError):
            store.update(P + "nope", b"v")
        with pytest.raises(ConflictError):
            store.delete(P + "x", expected_revision=rev - 1 if rev > 1 else rev + 100)
    rev2 = store.update(P + "x", b"2", expected_revision=rev)
    assert rev2 == rev + 1
    gone = store.delete(P + "x")
    assert (gone.value, gone.mod_revision) == (b"2", rev2 + 1)
    assert store.get(P + "x") is None
    store.close()
    from kybern.store import StoreError

    with pytest.raises(StoreError):
        store.create(P + "y", b"1")
