"""Fixtures for the store suite: every test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``KYBERN_TEST_PG_URL`` (a role that may CREATE DATABASE); each test
gets a database of its own, dropped afterwards, so tests never see each other's rows.
Without the variable the PostgreSQL half is skipped on a developer's machine and fails
under CI (``CI=true``), where a silent skip would hide a broken setup.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kybern.plugins.sqlstore import SqlStore
from sqlalchemy.engine import make_url
from support.pg import drop_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def pg_admin_url() -> str:
    """The test server's URL, or skip/fail (CI) when there is none."""
    url = os.environ.get("KYBERN_TEST_PG_URL")
    if not url:
        reason = "KYBERN_TEST_PG_URL is not set: no PostgreSQL to test the store against"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    return url


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as psycopg wants it (no +driver)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; yields its URL."""
    admin = libpq_url(pg_admin_url())
    name = f"kybern_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(pg_admin_url())
            .set(drivername="postgresql", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        drop_database(admin, name)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A datastore URL for an empty database of each backend."""
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        return f"sqlite:///{tmp_path / 'db' / 'state.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[..., SqlStore]]:
    """Opens stores on the test database (background compaction off unless asked for)."""
    opened: list[SqlStore] = []

    def _open(**options: Any) -> SqlStore:
        options.setdefault("compact_interval", 0)
        options.setdefault("pool_size", 2)
        store = SqlStore(store_url, **options)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., SqlStore]) -> SqlStore:
    return open_store()
