"""Datastore URLs: which database, which driver, and the store's tuning knobs.

The knobs travel in the URL's query string (``?compact_interval=60``) so that one
``--datastore-endpoint`` flag can say everything; they are removed before the URL reaches
SQLAlchemy, which would otherwise hand them to the driver as connection parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from kybern.store import StoreUnavailableError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


@dataclass(frozen=True)
class StoreOptions:
    """Tuning of one store instance; every field can be set in the URL or as a kwarg."""

    #: seconds between automatic compactions (kube-apiserver's --etcd-compaction-interval); 0 = off
    compact_interval: float = 300.0
    #: revisions of history always kept behind the newest one
    compact_retain: int = 1000
    #: revisions removed per compaction transaction, so writers never wait long
    compact_batch: int = 10000
    #: seconds between polls for writes made by other processes
    poll_interval: float = 0.1
    #: events a watcher may have queued before it is cut off with an error
    watch_queue_size: int = 10000
    #: milliseconds SQLite waits for another process' write lock
    busy_timeout: int = 30000
    #: connections per pool (there is one pool for writes and one for reads)
    pool_size: int = 4
    #: seconds to wait for a database connection before giving up
    connect_timeout: int = 10


_OPTION_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(StoreOptions)}


def parse_options(query: dict[str, Any], overrides: dict[str, Any]) -> StoreOptions:
    """Options from a URL query (strings) and constructor kwargs (kwargs win)."""
    values: dict[str, Any] = {}
    for source in (query, overrides):
        for name, raw in source.items():
            if name not in _OPTION_TYPES:
                raise TypeError(f"unknown store option {name!r}")
            if isinstance(raw, tuple | list):
                raw = raw[-1]
            try:
                values[name] = _OPTION_TYPES[name](raw)
            except (TypeError, ValueError):
                raise StoreUnavailableError(
                    f"store option {name}={raw!r} is not a valid {_OPTION_TYPES[name].__name__}"
                ) from None
            if values[name] < 0:
                raise StoreUnavailableError(f"store option {name}={raw!r} must not be negative")
    return replace(StoreOptions(), **values)


@dataclass(frozen=True)
class Target:
    """A parsed datastore URL."""

    #: "sqlite" or "postgresql"
    kind: str
    #: the SQLAlchemy URL, driver chosen, store options removed
    url: URL
    options: StoreOptions

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.database or "")

    def describe(self) -> str:
        """Where the data lives, for messages; never includes a password."""
        if self.kind == "sqlite":
            return f"sqlite database {self.sqlite_path}"
        return f"postgresql at {self.url.host or 'localhost'}:{self.url.port or 5432}"


def mask(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, safe to log or print."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparsable URL>"
    secret = [k for k in parsed.query if k.lower() in ("password", "passwd", "sslpassword")]
    if secret:
        parsed = parsed.update_query_dict({k: "***" for k in secret})
    return parsed.render_as_string(hide_password=True)


def parse_target(url: str, **overrides: Any) -> Target | None:
    """Parse a datastore URL; None when it is not a SQL URL this plugin serves."""
    scheme = url.split(":", 1)[0].lower()
    base, _, driver = scheme.partition("+")
    if base not in ("sqlite", "postgresql", "postgres"):
        return None
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailableError(f"cannot parse datastore URL {mask(url)}: {exc}") from None
    ours = {k: v for k, v in parsed.query.items() if k in _OPTION_TYPES}
    parsed = parsed.difference_update_query(list(ours))
    options = parse_options(ours, overrides)
    if base == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreUnavailableError(f"unsupported SQLite driver in {mask(url)} (use sqlite:///PATH)")
        database = parsed.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise StoreUnavailableError(
                f"datastore URL {mask(url)} names no file: use sqlite:////absolute/path/state.db"
            )
        parsed = parsed.set(drivername="sqlite+pysqlite", database=str(Path(database).absolute()))
        return Target("sqlite", parsed, options)
    if driver not in ("", "psycopg"):
        raise StoreUnavailableError(
            f"unsupported PostgreSQL driver in {mask(url)} (use postgresql://USER:PASS@HOST/DB)"
        )
    return Target("postgresql", parsed.set(drivername="postgresql+psycopg"), options)
