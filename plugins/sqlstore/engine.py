"""Database engines and the translation of connection failures into actionable messages.

Each store has two engines on the same database, because reads and writes want different
transactions and switching a pooled connection back and forth costs round trips:

* writes: SQLite ``BEGIN IMMEDIATE`` (take the write lock up front instead of failing to
  upgrade a read lock later); PostgreSQL READ COMMITTED, so the statement after the
  advisory lock sees every write committed before the lock was granted;
* reads: SQLite deferred ``BEGIN`` (one WAL snapshot for the whole transaction);
  PostgreSQL REPEATABLE READ (one snapshot, so a list and its revision agree).

pysqlite's own transaction handling is switched off (``isolation_level=None``) because it
neither begins a transaction before a SELECT nor lets us choose IMMEDIATE.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kybern.plugins.sqlstore.options import Target
from kybern.store import StoreUnavailableError
from sqlalchemy import event
from sqlalchemy.engine import Engine


def _sqlite_engine(target: Target, begin: str, pool_size: int, autocheckpoint: bool = True) -> Engine:
    engine = sa.create_engine(
        target.url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"check_same_thread": False, "timeout": target.options.busy_timeout / 1000},
    )
    busy = int(target.options.busy_timeout)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL: readers never block the writer and vice versa, and several processes can
        # share the file; NORMAL: a commit is durable at the next checkpoint, and the
        # database survives a crash of the process in any case (power loss may lose the
        # newest commits, as with etcd's default batching).
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={busy}")
        if not autocheckpoint:
            # a commit that triggers a checkpoint waits for its fsyncs; the API server commits
            # on its event loop, so the store checkpoints from a thread of its own instead
            # (SqlStore._checkpoint_loop). Writers still do when that thread falls far behind
            # (32 MiB of WAL instead of SQLite's 4), and the file shrinks back after a burst.
            cur.execute("PRAGMA wal_autocheckpoint=8192")
            cur.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def _pg_engine(target: Target, isolation: str, pool_size: int) -> Engine:
    return sa.create_engine(
        target.url,
        pool_size=pool_size,
        max_overflow=pool_size,
        isolation_level=isolation,
        connect_args={"connect_timeout": target.options.connect_timeout},
    )


def create_engines(target: Target) -> tuple[Engine, Engine]:
    """(writer, reader) engines for a target; nothing is connected yet."""
    size = max(1, target.options.pool_size)
    if target.kind == "sqlite":
        # every in-process write is serialized by the store anyway: one writer connection
        # (plus overflow for the rare migration or compaction) is all SQLite can use
        # readers are cheap on SQLite (no server process behind each connection)
        return (
            _sqlite_engine(target, "BEGIN IMMEDIATE", 1, autocheckpoint=False),
            _sqlite_engine(target, "BEGIN", max(size, 8)),
        )
    return _pg_engine(target, "READ COMMITTED", size), _pg_engine(target, "REPEATABLE READ", size)


def check_sqlite_path(path: Path) -> None:
    """Fail early, with a useful message, where SQLite would only say 'unable to open'."""
    where = f"cannot open sqlite database {path}"
    parent = path.parent
    if not parent.exists():
        raise StoreUnavailableError(f"{where}: directory {parent} does not exist (check --data-dir)")
    if not parent.is_dir():
        raise StoreUnavailableError(f"{where}: {parent} is not a directory (check --data-dir)")
    if path.exists() and path.is_dir():
        raise StoreUnavailableError(f"{where}: it is a directory (check --datastore-endpoint)")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        raise StoreUnavailableError(
            f"{where}: permission denied (make it writable by this user, or pass --data-dir)"
        )


def first_line(exc: BaseException) -> str:
    """The driver's own first line of an error, without SQLAlchemy's decorations."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    line = text[0].strip() if text else type(inner).__name__
    # psycopg prefixes connection failures with the address, which our messages already name
    line = re.sub(r"^(connection failed: )?connection to server at .*? failed: ", "", line)
    return re.sub(r"^FATAL:\s+", "", line)


def unavailable(target: Target, exc: BaseException) -> StoreUnavailableError:
    """A one-line message for a database that cannot be used, saying what to check."""
    reason = first_line(exc)
    if target.kind == "postgresql":
        return StoreUnavailableError(
            f"cannot connect to {target.describe()}: {reason} "
            "(check --datastore-endpoint and that the server runs)"
        )
    hint = "check --data-dir and that no other program holds the file"
    if "not a database" in reason:
        hint = "the file is not a kybern SQLite database; move it away or pass --data-dir"
    elif "readonly" in reason or "read-only" in reason or "permission" in reason.lower():
        hint = "make the file and its directory writable by this user, or pass --data-dir"
    return StoreUnavailableError(f"cannot open {target.describe()}: {reason} ({hint})")
