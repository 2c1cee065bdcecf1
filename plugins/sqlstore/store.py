"""SqlStore: kybern.store.Store on SQLite (default) or PostgreSQL.

Every write appends one row to the ``kv`` log (see :mod:`.schema`); its id is the global
revision. Writers are serialized — SQLite by its write lock (``BEGIN IMMEDIATE``, plus a
thread lock so threads of one process queue in Python instead of in SQLite's sleeping busy
handler), PostgreSQL by ``pg_advisory_xact_lock`` taken *before* the row's id is drawn from
the sequence. That is what makes ``id > last`` polling safe: with concurrent writers a
sequence can hand out 7 and 8 and commit 8 first, and a poller that saw 8 would never look
back for 7. Serialized, ids become visible strictly in order, so a snapshot that holds a
revision holds every smaller one; a list "at revision R" is simply the newest row per key
with ``id <= R``. On SQLite a caller may also gather several writes into one transaction
(:meth:`SqlStore.begin_group`, the API server's group commit): the ids stay in order, and
the group's events are published only once it committed.

Options (URL query string, e.g. ``sqlite:////var/lib/kybern/db/state.db?compact_interval=60``,
or keyword arguments of :class:`SqlStore`; see :class:`.options.StoreOptions`):

``compact_interval`` (300 s, 0 = never)
    how often the background compactor runs, like kube-apiserver's etcd compaction.
``compact_retain`` (1000)
    revisions of history always kept. A compaction also never goes past the revision seen
    at the previous run (so at least one interval of history survives), nor past what this
    process' watchers still need to read from the database.
``compact_batch`` (10000)
    revisions removed per transaction, so writers never wait long behind a compaction.
``poll_interval`` (0.1 s)
    how often watches look for writes by *other* processes; this process' writes are
    delivered immediately, and on PostgreSQL LISTEN/NOTIFY wakes the poller at once for
    other processes' writes too (see :mod:`.listen`).
``watch_queue_size`` (10000)
    events a slow watcher may have pending before its watch ends with an error.
``busy_timeout`` (30000 ms)
    how long a SQLite writer waits for another process' write lock.
``pool_size`` (4), ``connect_timeout`` (10 s)
    connection pool size (per pool: one for writes, one for reads) and connect timeout.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from kybern.plugins.sqlstore import migrate
from kybern.plugins.sqlstore.engine import check_sqlite_path, create_engines, first_line, unavailable
from kybern.plugins.sqlstore.listen import CHANNEL, PgListener
from kybern.plugins.sqlstore.options import Target, mask, parse_target
from kybern.plugins.sqlstore.schema import COMPACT_REVISION, kv, kv_meta
from kybern.plugins.sqlstore.watch import SqlWatch, WatchHub
from kybern.store import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    FutureRevisionError,
    InvalidContinueError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
    StoreUnavailableError,
    prefix_end,
)
from loguru import logger

log = logger.bind(component="sqlstore")
T = TypeVar("T")

#: advisory lock key serializing writers of one PostgreSQL database ("kybern" in ASCII)
WRITE_LOCK_KEY = 0x6B796265726E

_ROW = (
    kv.c.id,
    kv.c.name,
    kv.c.created,
    kv.c.deleted,
    kv.c.create_revision,
    kv.c.prev_revision,
    kv.c.value,
    kv.c.old_value,
)

# -- statements, built once so SQLAlchemy's compiled cache serves every call -------------------

_LATEST = (
    sa.select(kv.c.id, kv.c.created, kv.c.deleted, kv.c.create_revision, kv.c.value)
    .where(kv.c.name == sa.bindparam("name"))
    .order_by(kv.c.id.desc())
    .limit(1)
)
_AT = (
    sa.select(kv.c.id, kv.c.created, kv.c.deleted, kv.c.create_revision, kv.c.value)
    .where(kv.c.name == sa.bindparam("name"), kv.c.id <= sa.bindparam("rev"))
    .order_by(kv.c.id.desc())
    .limit(1)
)
_INSERT = kv.insert()
_COMPACTED = sa.select(kv_meta.c.value).where(kv_meta.c.name == COMPACT_REVISION).scalar_subquery()
_REVISIONS = sa.select(sa.func.coalesce(sa.select(sa.func.max(kv.c.id)).scalar_subquery(), 0), _COMPACTED)

# newest row per key in [lo, hi) at a revision: the (name, id) index answers this
_NEWEST = (
    sa.select(sa.func.max(kv.c.id).label("id"))
    .where(
        kv.c.name >= sa.bindparam("lo"),
        kv.c.name < sa.bindparam("hi"),
        kv.c.name > sa.bindparam("after"),
        kv.c.id <= sa.bindparam("rev"),
    )
    .group_by(kv.c.name)
    .subquery("newest")
)
_LIVE = sa.join(kv, _NEWEST, kv.c.id == _NEWEST.c.id)
_LIST = (
    sa.select(kv.c.id, kv.c.name, kv.c.created, kv.c.create_revision, kv.c.value)
    .select_from(_LIVE)
    .where(kv.c.deleted == sa.false())
    .order_by(kv.c.name)
)
_LIST_LIMITED = _LIST.limit(sa.bindparam("limit"))
_COUNT = sa.select(sa.func.count()).select_from(_LIVE).where(kv.c.deleted == sa.false())

_AFTER = (
    sa.select(*_ROW).where(kv.c.id > sa.bindparam("after")).order_by(kv.c.id).limit(sa.bindparam("limit"))
)
_RANGE = (
    sa.select(*_ROW)
    .where(
        kv.c.id > sa.bindparam("after"),
        kv.c.id <= sa.bindparam("upto"),
        kv.c.name >= sa.bindparam("lo"),
        kv.c.name < sa.bindparam("hi"),
    )
    .order_by(kv.c.id)
)

# Compaction from revision lo to hi: every row a write in (lo, hi] replaced is its
# prev_revision, and deletes in (lo, hi] leave nothing to keep. Rows older than lo were
# handled by earlier compactions, so both halves are index range scans, not table scans.
_SUPERSEDED = sa.select(kv.c.prev_revision).where(
    kv.c.id > sa.bindparam("lo"), kv.c.id <= sa.bindparam("hi"), kv.c.prev_revision > 0
)
_COMPACT = sa.delete(kv).where(
    sa.or_(
        kv.c.id.in_(_SUPERSEDED),
        sa.and_(kv.c.deleted == sa.true(), kv.c.id > sa.bindparam("lo"), kv.c.id <= sa.bindparam("hi")),
    )
)
_SET_COMPACTED = (
    sa.update(kv_meta)
    .where(kv_meta.c.name == COMPACT_REVISION, kv_meta.c.value < sa.bindparam("hi"))
    .values(value=sa.bindparam("hi"))
)
# the NOTIFY rides on the lock statement: delivered at commit, it costs no extra round trip
_PG_LOCK = sa.text(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY}), pg_notify('{CHANNEL}', :me)")

#: SQLite's hot write path, on the DBAPI connection directly (see SqlStore._sqlite_write):
#: SQLAlchemy's statement execution costs more than SQLite's own work for these
_SQLITE_LATEST = (
    "SELECT id, created, deleted, create_revision, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1"
)
_SQLITE_REVISIONS = (
    "SELECT coalesce((SELECT max(id) FROM kv), 0), "
    f"(SELECT value FROM kv_meta WHERE name = '{COMPACT_REVISION}')"
)
_SQLITE_INSERT = (
    "INSERT INTO kv (name, created, deleted, create_revision, prev_revision, value, old_value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_NO_LIMIT_REV = 2**62
#: seconds between SQLite WAL checkpoints (writers never checkpoint, see _checkpoint_loop)
CHECKPOINT_INTERVAL = 0.25


def _event(row: Sequence[Any]) -> Event:
    rev, name, created, deleted, create_rev, prev_rev, value, old_value = row
    if created:
        create_rev = rev
    kv_ = KeyValue(name, bytes(value or b""), rev, create_rev)
    if created:
        return Event(EventType.PUT, kv_, None, rev)
    if deleted:
        return Event(EventType.DELETE, kv_, KeyValue(name, kv_.value, prev_rev, create_rev), rev)
    return Event(EventType.PUT, kv_, KeyValue(name, bytes(old_value or b""), prev_rev, create_rev), rev)


def encode_continue(revision: int, key: str) -> str:
    raw = json.dumps({"rev": revision, "key": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    """(revision, last key) of a token; InvalidContinueError unless we made it for ``prefix``."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        revision, key = data["rev"], data["key"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidContinueError(f"continue token is not valid: {token[:40]!r}") from None
    if not isinstance(revision, int) or not isinstance(key, str) or revision < 1:
        raise InvalidContinueError(f"continue token is not valid: {token[:40]!r}")
    if not key.startswith(prefix):
        raise InvalidContinueError("continue token belongs to another list")
    return revision, key


class _Group:
    """The writes of one group commit: their events, published once it commits."""

    __slots__ = ("events", "failed")

    def __init__(self) -> None:
        self.events: list[Event] = []
        #: why a write inside the group failed (the transaction, and so the group, is lost)
        self.failed: str | None = None


class SqlStore:
    """The store (kybern.store.Store) on a SQL database; see the module docstring."""

    def __init__(self, url: str, data_dir: Path | None = None, **options: Any) -> None:
        target = parse_target(url, **options)
        if target is None:
            raise StoreUnavailableError(f"not a SQL datastore URL: {mask(url)}")
        self.target: Target = target
        self.options = target.options
        self.data_dir = data_dir
        self._pg = target.kind == "postgresql"
        self._closed = False
        #: tells this store's own NOTIFYs from other processes'
        self._id = uuid.uuid4().hex
        self._local_write_lock = nullcontext() if self._pg else threading.RLock()
        #: SQLite: the writer engine's DBAPI connection, kept checked out for key writes
        self._raw_writer: Any = None
        #: SQLite only: a caller that holds this (re-entrant) lock may run key operations (get,
        #: create, update, delete) on its own thread without waiting for another writer of this
        #: process; the API server does so on its event loop, where a thread hand-off per write
        #: costs more than the write (see kybern.plugins.apiserver.app.ApiServer.run_write)
        self.inline_lock: Any = None if self._pg else self._local_write_lock
        #: the open write group (begin_group), SQLite only
        self._group: _Group | None = None
        if not self._pg:
            check_sqlite_path(target.sqlite_path)
        self._writer, self._reader = create_engines(target)
        try:
            self.schema_revision = migrate.upgrade(self._writer)
            start = self.current_revision()
        except StoreUnavailableError:
            self._dispose()
            raise
        except sa.exc.DBAPIError as exc:
            self._dispose()
            raise unavailable(target, exc) from None
        self._hub = WatchHub(
            self._read_after,
            self._read_range,
            start,
            self.options.poll_interval,
            self.options.watch_queue_size,
        )
        self._listener = (
            PgListener(target.url, self._id, self._hub.wake, self.options.connect_timeout)
            if self._pg
            else None
        )
        self._stop = threading.Event()
        self._compactor: threading.Thread | None = None
        if self.options.compact_interval > 0:
            self._compactor = threading.Thread(
                target=self._compact_loop, name="sqlstore-compactor", daemon=True
            )
            self._compactor.start()
        self._checkpointer: threading.Thread | None = None
        if not self._pg:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="sqlstore-checkpointer", daemon=True
            )
            self._checkpointer.start()
        log.info("store open: {} at revision {}", mask(target.url), start)

    # -- plumbing --------------------------------------------------------------------------

    def _dispose(self) -> None:
        if self._raw_writer is not None:
            self._raw_writer.close()  # back to the pool, which dispose() then closes
            self._raw_writer = None
        self._writer.dispose()
        self._reader.dispose()

    def _failure(self, exc: sa.exc.DBAPIError) -> StoreUnavailableError:
        return StoreUnavailableError(f"{self.target.describe()}: {first_line(exc)}")

    def _begin_write(self) -> sa.Connection:
        """A write transaction holding the writer lock.

        A pooled PostgreSQL connection may have been dropped by the server (restart,
        idle timeout); that shows at the lock statement, before anything is written, so one
        retry on a fresh connection is safe and spares the caller a spurious error.
        """
        for attempt in (1, 2):
            try:
                conn = self._writer.connect()
            except sa.exc.DBAPIError as exc:
                raise self._failure(exc) from None
            try:
                conn.begin()
                if self._pg:
                    conn.execute(_PG_LOCK, {"me": self._id})
                return conn
            except sa.exc.DBAPIError as exc:
                conn.close()
                if attempt == 1 and exc.connection_invalidated:
                    continue
                raise self._failure(exc) from None
        raise AssertionError("unreachable")

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One short write transaction, serialized against every other writer."""
        if self._closed:
            raise StoreError("store is closed")
        with self._local_write_lock:
            conn = self._begin_write()
            try:
                yield conn
                conn.commit()
            except sa.exc.IntegrityError:
                raise
            except sa.exc.DBAPIError as exc:
                raise self._failure(exc) from None
            finally:
                conn.close()  # rolls back whatever was not committed

    def _read_tx(self, body: Callable[[sa.Connection], T]) -> T:
        """Run ``body`` in a read-only transaction on one snapshot.

        Reads are idempotent, so a connection the server dropped is retried once.
        """
        if self._closed:
            raise StoreError("store is closed")
        for attempt in (1, 2):
            try:
                with self._reader.connect() as conn:
                    return body(conn)
            except sa.exc.DBAPIError as exc:
                if attempt == 1 and exc.connection_invalidated:
                    continue
                raise self._failure(exc) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _revisions(conn: sa.Connection) -> tuple[int, int]:
        """(current, compacted) in the connection's snapshot.

        The newest row can be a compacted delete, so current is never below compacted.
        """
        newest, compacted = conn.execute(_REVISIONS).one()
        return max(int(newest), int(compacted)), int(compacted)

    def _check_revision(self, conn: sa.Connection, revision: int) -> int:
        current, compacted = self._revisions(conn)
        if revision < compacted:
            raise CompactedError(revision, compacted)
        if revision > current:
            raise FutureRevisionError(f"revision {revision} is newer than the current revision {current}")
        return current

    # -- writes ----------------------------------------------------------------------------

    def _insert(self, conn: sa.Connection, params: dict[str, Any]) -> int:
        return int(conn.execute(_INSERT, params).inserted_primary_key[0])

    def _sqlite_write(self, key: str, build: Callable[[Any], tuple[Any, ...]]) -> tuple[int, Any]:
        """One key write on SQLite through the DBAPI connection: ``build(latest_row)`` returns
        the row to insert (name, created, deleted, create_revision, prev_revision, value,
        old_value) or raises; returns (new revision, latest row before the write).

        The same transaction as :meth:`_write` (BEGIN IMMEDIATE under the process' write lock),
        without SQLAlchemy's per-statement work, which cost more than SQLite's own on a create.
        Inside a group (:meth:`begin_group`) it joins the group's transaction instead.
        """
        if self._closed:
            raise StoreError("store is closed")
        with self._local_write_lock:
            group = self._group
            if group is not None and group.failed is not None:
                raise StoreUnavailableError(group.failed)
            try:
                conn = self._sqlite_conn()
                cur = conn.cursor()
                if group is None:
                    cur.execute("BEGIN IMMEDIATE")
                try:
                    row = cur.execute(_SQLITE_LATEST, (key,)).fetchone()
                    cur.execute(_SQLITE_INSERT, build(row))
                    rev = int(cur.lastrowid)
                    if group is None:
                        cur.execute("COMMIT")
                except BaseException as exc:
                    # in a group, a refused write (build raised: conflict, exists; or a
                    # constraint undid just its statement) leaves the others' writes be
                    lost = group is None or (
                        isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError)
                    )
                    if lost and conn.in_transaction:
                        cur.execute("ROLLBACK")
                    raise
                finally:
                    cur.close()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                self._drop_writer()
                message = f"{self.target.describe()}: {first_line(exc)}"
                if group is not None:
                    group.failed = message  # its earlier writes were rolled back with it
                raise StoreUnavailableError(message) from None
        return rev, row

    def _publish(self, event: Event) -> None:
        """Hand a committed write to the watchers; a group's writes wait for its commit."""
        group = self._group
        if group is not None and self._local_write_lock._is_owned():  # type: ignore[union-attr]
            group.events.append(event)
        else:
            self._hub.publish(event)

    # -- group commit (SQLite) ----------------------------------------------------------------

    def begin_group(self) -> bool:
        """Start one transaction for the key writes this thread makes until :meth:`commit_group`
        (SQLite). Each write then costs its two statements, not a transaction of its own: the
        commit's WAL frames (the table's and indexes' shared pages, the header) and file locks
        are paid once per group. The caller must hold :attr:`inline_lock` and must call
        :meth:`commit_group` soon: other threads' writes wait for it. False: not possible now
        (PostgreSQL, closed, a group already open)."""
        if self._pg or self._closed or self._group is not None:
            return False
        lock = self._local_write_lock
        if not lock.acquire(blocking=False):  # type: ignore[union-attr]
            return False
        try:
            conn = self._sqlite_conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            lock.release()  # type: ignore[union-attr]
            self._drop_writer()
            raise StoreUnavailableError(f"{self.target.describe()}: {first_line(exc)}") from None
        self._group = _Group()
        return True

    def commit_group(self) -> int:
        """Commit the open group and publish its writes in order; how many there were. If it
        cannot be committed, none of them happened (raises StoreUnavailableError, publishes
        nothing)."""
        group = self._group
        if group is None:
            if self._closed:  # close() ended the group: whether it committed is not known here
                raise StoreError("store is closed")
            return 0
        lock = self._local_write_lock
        self._group = None
        try:
            failed = group.failed
            if failed is None:
                try:
                    self._sqlite_conn().execute("COMMIT")
                except sqlite3.Error as exc:
                    failed = f"{self.target.describe()}: {first_line(exc)}"
                    self._drop_writer()  # (its close rolls back what is left)
        finally:
            lock.release()  # type: ignore[union-attr]
        if failed is not None:
            raise StoreUnavailableError(failed)
        for event in group.events:
            self._hub.publish(event)
        return len(group.events)

    def _drop_writer(self) -> None:
        """After an error: close the writer's DBAPI connection (rolling back what it held);
        the next write opens a fresh one."""
        if self._raw_writer is not None:
            self._raw_writer.invalidate()
            self._raw_writer = None

    def _sqlite_conn(self) -> sqlite3.Connection:
        """The writer's sqlite3 connection itself: its pool wrapper (kept in ``_raw_writer``,
        which invalidates it after an error) costs a Python call per cursor and attribute."""
        raw = self._raw_writer
        if raw is None:
            raw = self._raw_writer = self._writer.raw_connection()
        return raw.driver_connection  # type: ignore[no-any-return]

    def _sqlite_latest(self, key: str) -> Any:
        """The newest row of ``key`` (id, created, deleted, create_revision, value) or None."""
        return self._sqlite_one(_SQLITE_LATEST, (key,))

    def _sqlite_one(self, statement: str, params: tuple[Any, ...]) -> Any:
        """The first row of one read-only statement on the writer's DBAPI connection (SQLite;
        see :meth:`_sqlite_write`): a single statement reads one snapshot without a
        transaction, and that connection sees every commit."""
        if self._closed:
            raise StoreError("store is closed")
        with self._local_write_lock:
            try:
                cur = self._sqlite_conn().cursor()
                try:
                    return cur.execute(statement, params).fetchone()
                finally:
                    cur.close()
            except sqlite3.Error as exc:
                self._drop_writer()
                raise StoreUnavailableError(f"{self.target.describe()}: {first_line(exc)}") from None

    @staticmethod
    def _live(key: str, row: Any, expected: int | None) -> Any:
        """The latest row of a key that must exist (at ``expected``, when given)."""
        if row is None or row[2]:
            raise KeyNotFoundError(key)
        if expected is not None and row[0] != expected:
            raise ConflictError(key, expected, row[0])
        return row

    def create(self, key: str, value: bytes) -> int:
        value = bytes(value)
        if not self._pg:

            def build(row: Any) -> tuple[Any, ...]:
                if row is not None and not row[2]:
                    raise KeyExistsError(key)
                return (key, True, False, 0, row[0] if row is not None else 0, value, None)

            try:
                rev, _ = self._sqlite_write(key, build)
            except sqlite3.IntegrityError:
                raise KeyExistsError(key) from None
            self._publish(Event(EventType.PUT, KeyValue(key, value, rev, rev), None, rev))
            return rev
        try:
            with self._write() as conn:
                row = conn.execute(_LATEST, {"name": key}).first()
                if row is not None and not row.deleted:
                    raise KeyExistsError(key)
                rev = self._insert(
                    conn,
                    {
                        "name": key,
                        "created": True,
                        "deleted": False,
                        "create_revision": 0,
                        "prev_revision": row.id if row is not None else 0,
                        "value": value,
                        "old_value": None,
                    },
                )
        except sa.exc.IntegrityError:
            raise KeyExistsError(key) from None
        self._hub.publish(Event(EventType.PUT, KeyValue(key, value, rev, rev), None, rev))
        return rev

    def _current_row(self, conn: sa.Connection, key: str, expected: int | None) -> Any:
        row = conn.execute(_LATEST, {"name": key}).first()
        if row is None or row.deleted:
            raise KeyNotFoundError(key)
        if expected is not None and row.id != expected:
            raise ConflictError(key, expected, row.id)
        return row

    def _change(
        self, key: str, value: bytes | None, expected_revision: int | None
    ) -> tuple[int, int, int, bytes]:
        """Update (``value``) or delete (None) a live key: (revision, replaced revision,
        create revision, replaced value)."""
        deleting = value is None
        if not self._pg:
            old: list[Any] = []

            def build(row: Any) -> tuple[Any, ...]:
                row = self._live(key, row, expected_revision)
                create_rev = row[0] if row[1] else row[3]
                prev_value = bytes(row[4] or b"")
                old[:] = [row[0], create_rev, prev_value]
                if deleting:
                    return (key, False, True, create_rev, row[0], prev_value, None)
                return (key, False, False, create_rev, row[0], value, prev_value)

            try:
                rev, _ = self._sqlite_write(key, build)
            except sqlite3.IntegrityError:
                raise ConflictError(key, expected_revision or 0, self._revision_of(key)) from None
            return rev, old[0], old[1], old[2]
        try:
            with self._write() as conn:
                row = self._current_row(conn, key, expected_revision)
                create_rev = row.id if row.created else row.create_revision
                prev_value = bytes(row.value or b"")
                rev = self._insert(
                    conn,
                    {
                        "name": key,
                        "created": False,
                        "deleted": deleting,
                        "create_revision": create_rev,
                        "prev_revision": row.id,
                        "value": prev_value if deleting else value,
                        "old_value": None if deleting else prev_value,
                    },
                )
        except sa.exc.IntegrityError:
            raise ConflictError(key, expected_revision or 0, self._revision_of(key)) from None
        return rev, row.id, create_rev, prev_value

    def update(self, key: str, value: bytes, expected_revision: int | None = None) -> int:
        value = bytes(value)
        rev, prev_rev, create_rev, old = self._change(key, value, expected_revision)
        prev = KeyValue(key, old, prev_rev, create_rev)
        self._publish(Event(EventType.PUT, KeyValue(key, value, rev, create_rev), prev, rev))
        return rev

    def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        rev, prev_rev, create_rev, value = self._change(key, None, expected_revision)
        gone = KeyValue(key, value, rev, create_rev)
        self._publish(Event(EventType.DELETE, gone, KeyValue(key, value, prev_rev, create_rev), rev))
        return gone

    def _revision_of(self, key: str) -> int:
        found = self.get(key)
        return found.mod_revision if found is not None else 0

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str, revision: int | None = None) -> KeyValue | None:
        """The live value now, or at ``revision`` (None or 0 mean now)."""

        if not revision and not self._pg:
            # one statement needs no transaction: it reads one snapshot on its own, and the
            # writer's DBAPI connection sees every commit (a read-modify-write reads here)
            latest = self._sqlite_latest(key)
            if latest is None or latest[2]:
                return None
            rev, created, _, create_rev, value = latest
            return KeyValue(key, bytes(value or b""), rev, rev if created else create_rev)

        def body(conn: sa.Connection) -> Any:
            if revision:
                self._check_revision(conn, revision)
                return conn.execute(_AT, {"name": key, "rev": revision}).first()
            return conn.execute(_LATEST, {"name": key}).first()

        row = self._read_tx(body)
        if row is None or row.deleted:
            return None
        return KeyValue(key, bytes(row.value or b""), row.id, row.id if row.created else row.create_revision)

    def list(
        self,
        prefix: str,
        revision: int | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Live keys under a prefix at ``revision`` (None or 0: now); a token's revision wins.

        ``remaining`` is counted exactly, and only when another page follows.
        """
        after = ""
        if continue_token:
            revision, after = decode_continue(continue_token, prefix)
        params: dict[str, Any] = {"lo": prefix, "hi": prefix_end(prefix), "after": after}
        paged = limit is not None and limit > 0

        def body(conn: sa.Connection) -> tuple[int, Sequence[Any], int | None]:
            if revision:
                self._check_revision(conn, revision)
                at = revision
            else:
                at, _ = self._revisions(conn)
            if not paged:
                return at, conn.execute(_LIST, {**params, "rev": at}).all(), None
            rows = conn.execute(_LIST_LIMITED, {**params, "rev": at, "limit": limit + 1}).all()
            if len(rows) <= limit:  # type: ignore[operator]
                return at, rows, None
            rows = rows[:limit]
            remaining = conn.execute(_COUNT, {**params, "rev": at, "after": rows[-1].name}).scalar_one()
            return at, rows, int(remaining)

        at, rows, remaining = self._read_tx(body)
        more = remaining is not None
        items = [
            KeyValue(r.name, bytes(r.value or b""), r.id, r.id if r.created else r.create_revision)
            for r in rows
        ]
        token = encode_continue(at, items[-1].key) if more else None
        return ListResult(items=items, revision=at, continue_token=token, remaining=remaining)

    def count(self, prefix: str) -> int:
        params = {"lo": prefix, "hi": prefix_end(prefix), "after": "", "rev": _NO_LIMIT_REV}
        return int(self._read_tx(lambda conn: conn.execute(_COUNT, params).scalar_one()))

    def current_revision(self) -> int:
        if not self._pg:  # asked before every list: one statement on the writer's connection
            newest, compacted = self._sqlite_one(_SQLITE_REVISIONS, ())
            return max(int(newest), int(compacted))
        return self._read_tx(self._revisions)[0]

    def compacted_revision(self) -> int:
        return self._read_tx(self._revisions)[1]

    # -- watches ---------------------------------------------------------------------------

    def watch(self, prefix: str, after_revision: int) -> SqlWatch:
        if self._closed:
            raise StoreError("store is closed")
        compacted = self.compacted_revision()
        if after_revision < compacted:
            raise CompactedError(after_revision, compacted)
        return self._hub.add(prefix, after_revision)

    def _read_after(self, after: int, limit: int) -> tuple[list[Event], int]:
        """The poller's read: the next rows of the log, and the compacted revision (one snapshot)."""

        def body(conn: sa.Connection) -> tuple[list[Event], int]:
            _, compacted = self._revisions(conn)
            rows = conn.execute(_AFTER, {"after": after, "limit": limit}).all()
            return [_event(r) for r in rows], compacted

        return self._read_tx(body)

    def _read_range(self, prefix: str, after: int, upto: int) -> list[Event]:
        """History for a watch that starts behind the poller."""

        def body(conn: sa.Connection) -> list[Event]:
            _, compacted = self._revisions(conn)
            if after < compacted:
                raise CompactedError(after, compacted)
            params = {"after": after, "upto": upto, "lo": prefix, "hi": prefix_end(prefix)}
            return [_event(r) for r in conn.execute(_RANGE, params).all()]

        return self._read_tx(body)

    # -- compaction ------------------------------------------------------------------------

    def compact(self, revision: int) -> int:
        current, compacted = self._read_tx(self._revisions)
        if revision > current:
            raise FutureRevisionError(f"cannot compact to {revision}: the current revision is {current}")
        if revision <= compacted:
            return 0
        # let this process' watchers receive everything up to the target before it goes
        self._hub.wait_until(revision, timeout=10)
        removed = 0
        lo = compacted
        while lo < revision:
            hi = min(revision, lo + max(1, self.options.compact_batch))
            with self._write() as conn:
                # re-read under the write lock: another process may have compacted meanwhile
                _, lo = self._revisions(conn)
                if lo >= hi:
                    continue
                removed += conn.execute(_COMPACT, {"lo": lo, "hi": hi}).rowcount or 0
                conn.execute(_SET_COMPACTED, {"hi": hi})
            lo = hi
        log.debug("compacted to revision {}: {} rows removed", revision, removed)
        return removed

    def _compact_loop(self) -> None:
        """kube-apiserver style: every interval, compact to what the previous run saw."""
        previous: int | None = None
        while not self._stop.wait(self.options.compact_interval):
            try:
                current = self.current_revision()
                target = current - self.options.compact_retain
                if previous is not None:
                    target = min(target, previous)
                target = min(target, self._hub.oldest_needed())
                previous = current
                if target > self.compacted_revision():
                    removed = self.compact(target)
                    log.info("compacted history to revision {} ({} rows removed)", target, removed)
            except StoreError as exc:
                log.warning("automatic compaction failed: {}", exc)
            except Exception:
                log.exception("automatic compaction failed")

    # -- lifecycle -------------------------------------------------------------------------

    def _checkpoint_loop(self) -> None:
        """SQLite: copy the WAL into the database file now and then, off the writers' path.

        Writers seldom checkpoint (a large ``wal_autocheckpoint``, see engine.py): a checkpoint
        fsyncs, and a writer may be the API server's event loop. A PASSIVE checkpoint takes no
        lock writers wait for; once it has copied everything, the next write starts the WAL
        over, so the file stays small.
        """
        failures = 0
        while not self._stop.wait(CHECKPOINT_INTERVAL):
            try:
                raw = self._reader.raw_connection()  # autocommit: no transaction around it
                try:
                    cur = raw.cursor()
                    cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cur.close()
                finally:
                    raw.close()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("WAL checkpoint failed ({} failures): {}", failures, first_line(exc))

    def close(self) -> None:
        if self._closed:
            return
        if self._group is not None and self._local_write_lock._is_owned():  # type: ignore[union-attr]
            # a group still open on this thread: commit it now, before the threads that may
            # wait for its lock are joined (its requests are told the store closed)
            with contextlib.suppress(StoreError):
                self.commit_group()
        self._closed = True
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join(timeout=10)
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
        if self._listener is not None:
            self._listener.close()
        self._hub.close()
        self._dispose()
        log.debug("store closed: {}", mask(self.target.url))

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
