"""Opening stores through the plugin hook, error messages, and ``kybern db`` (migrations)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from kybern.plugins import sqlstore
from kybern.plugins.sqlstore import SqlStore
from kybern.plugins.sqlstore.options import mask, parse_target
from kybern.store import StoreUnavailableError
from sqlalchemy.engine import make_url

from .conftest import libpq_url, pg_admin_url

KYBERN = [sys.executable, "-c", "import sys; from kybern.cli import main; sys.exit(main())"]


def kybern(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KYBERN, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hook_opens_sql_urls_only(tmp_path: Path) -> None:
    assert sqlstore.kybern_open_store(url="etcd://127.0.0.1:2379", data_dir=tmp_path) is None
    store = sqlstore.kybern_open_store(url=f"sqlite:///{tmp_path / 'state.db'}", data_dir=tmp_path)
    assert isinstance(store, SqlStore)
    store.close()
    assert {c.name for c in sqlstore.kybern_cli_commands()} == {"db"}


def test_url_options_are_parsed_and_stripped() -> None:
    target = parse_target(
        "postgresql://u:secret@db.example:6543/k?sslmode=disable&compact_interval=60&poll_interval=0.5"
    )
    assert target is not None
    assert target.url.drivername == "postgresql+psycopg"
    assert dict(target.url.query) == {"sslmode": "disable"}
    assert (target.options.compact_interval, target.options.poll_interval) == (60.0, 0.5)
    assert "secret" not in mask(target.url) and "secret" not in target.describe()
    assert "s3cret" not in mask("postgresql://u@h/d?password=s3cret&sslmode=require")
    assert parse_target("postgres://u@h/d").url.drivername == "postgresql+psycopg"  # type: ignore[union-attr]
    with pytest.raises(StoreUnavailableError, match="compact_retain"):
        parse_target("sqlite:////tmp/x.db?compact_retain=lots")
    with pytest.raises(StoreUnavailableError, match="names no file"):
        parse_target("sqlite://")


def test_unreachable_postgresql_is_one_actionable_line() -> None:
    port = free_port()
    with pytest.raises(StoreUnavailableError) as err:
        SqlStore(f"postgresql://kybern:hunter2@127.0.0.1:{port}/kybern", connect_timeout=3)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot connect to postgresql at 127.0.0.1:{port}: ")
    assert "check --datastore-endpoint and that the server runs" in message
    assert "hunter2" not in message


def test_unusable_sqlite_paths(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        SqlStore(f"sqlite:///{tmp_path / 'missing' / 'state.db'}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailableError, match="not a directory"):
        SqlStore(f"sqlite:///{tmp_path / 'file' / 'state.db'}")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(StoreUnavailableError, match="not a kybern SQLite database") as err:
        SqlStore(f"sqlite:///{garbage}")
    assert "\n" not in str(err.value)


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with SqlStore(f"sqlite:///{tmp_path / 'state.db'}", compact_interval=0) as store:
        store.create("/k", b"v")
        with store._writer.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_db_upgrade_and_current_on_sqlite(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    missing = kybern("db", "current", "--data-dir", str(data_dir))
    assert missing.returncode != 0
    assert "kybern db upgrade" in missing.stderr and "Traceback" not in missing.stderr

    up = kybern("db", "upgrade", "--data-dir", str(data_dir))
    assert up.returncode == 0, up.stderr
    assert f"sqlite database {data_dir / 'db' / 'state.db'}: schema at revision 0001 (head)" in up.stdout

    with SqlStore(f"sqlite:///{data_dir / 'db' / 'state.db'}", compact_interval=0) as store:
        store.create("/registry/namespaces/default", b"{}")
        store.create("/registry/namespaces/kube-system", b"{}")
    current = kybern("db", "current", "--data-dir", str(data_dir))
    assert current.returncode == 0, current.stderr
    assert "schema: 0001 (head)" in current.stdout
    assert "revision: 2" in current.stdout


@pytest.mark.postgres
def test_db_upgrade_and_current_on_postgresql(pg_database: str) -> None:
    empty = kybern("db", "current", "--datastore-endpoint", pg_database)
    assert empty.returncode == 0, empty.stderr
    assert "schema: none" in empty.stdout
    up = kybern("db", "upgrade", "--datastore-endpoint", pg_database)
    assert up.returncode == 0, up.stderr
    current = kybern("db", "current", "--datastore-endpoint", pg_database)
    assert "schema: 0001 (head)" in current.stdout and "revision: 0" in current.stdout
    password = parse_target(pg_database).url.password  # type: ignore[union-attr]
    if password:
        assert f":{password}@" not in up.stdout + up.stderr + current.stdout + current.stderr


def test_db_commands_report_unreachable_postgresql() -> None:
    url = f"postgresql://kybern:hunter2@127.0.0.1:{free_port()}/kybern?connect_timeout=3"
    result = kybern("db", "current", "--datastore-endpoint", url)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("kybern: error:")]
    assert lines and "cannot connect to postgresql at 127.0.0.1:" in lines[0]
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_migrations_ship_with_the_package() -> None:
    from kybern.plugins.sqlstore.migrate import head_revision, script_location

    location = script_location()
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()
    assert any(p.name.startswith("0001_") for p in (location / "versions").glob("*.py"))
    assert head_revision() == "0001"


def test_schema_from_a_newer_kybern_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with SqlStore(url, compact_interval=0) as store, store._writer.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(StoreUnavailableError, match="revision 0099, newer than this kybern knows") as err:
        SqlStore(url, compact_interval=0)
    assert "\n" not in str(err.value)


@pytest.mark.postgres
def test_connections_dropped_by_the_server_are_replaced(pg_database: str) -> None:
    """After a PostgreSQL restart (here: every backend of the database terminated) the next
    calls succeed on fresh connections, and the watch carries on without a gap."""
    with SqlStore(pg_database, compact_interval=0) as store:
        watch = store.watch("/", 0)
        first = store.create("/a", b"1")
        assert store.get("/a") is not None
        with psycopg.connect(libpq_url(pg_admin_url()), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (make_url(pg_database).database,),
            )
        second = store.create("/b", b"2")
        assert [kv.key for kv in store.list("/").items] == ["/a", "/b"]
        events = [watch.get(10), watch.get(10)]
        assert [e.revision for e in events if e is not None] == [first, second]
