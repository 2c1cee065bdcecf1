"""``kybern db``: migrate or inspect the datastore without starting a server.

Useful before an upgrade (migrate while the old server is stopped) and to see which schema
and store revision a database is at. Options and defaults match ``kybern server``.
"""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa
from kybern.config import Config, default_data_dir
from kybern.plugins.sqlstore import migrate
from kybern.plugins.sqlstore.engine import check_sqlite_path, create_engines, unavailable
from kybern.plugins.sqlstore.options import Target, mask, parse_target
from kybern.plugins.sqlstore.schema import COMPACT_REVISION, kv, kv_meta
from kybern.store import StoreUnavailableError

_data_dir = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="State directory [default: /var/lib/kybern as root, else ~/.local/share/kybern]",
)
_endpoint = click.option(
    "--datastore-endpoint",
    default=None,
    metavar="URL",
    help="postgresql://user:pass@host/db (default: SQLite in DATA_DIR/db)",
)


def _target(data_dir: Path | None, endpoint: str | None, create_dir: bool) -> Target:
    config = Config(data_dir=data_dir or default_data_dir(), datastore_endpoint=endpoint)
    url = config.datastore_url()
    target = parse_target(url)
    if target is None:
        raise StoreUnavailableError(f"the sqlstore plugin does not handle {mask(url)}")
    if target.kind == "sqlite":
        if create_dir and endpoint is None:
            try:
                target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot create {target.sqlite_path.parent}: {exc.strerror} (pass --data-dir)"
                ) from None
        if not create_dir and not target.sqlite_path.exists():
            raise StoreUnavailableError(
                f"no database at {target.sqlite_path} (run `kybern db upgrade` or start the server first)"
            )
        check_sqlite_path(target.sqlite_path)
    return target


@click.group("db")
def db() -> None:
    """Migrate or inspect the datastore (SQLite or PostgreSQL)."""


@db.command("upgrade")
@_data_dir
@_endpoint
def upgrade(data_dir: Path | None, datastore_endpoint: str | None) -> None:
    """Apply every pending schema migration."""
    target = _target(data_dir, datastore_endpoint, create_dir=True)
    writer, reader = create_engines(target)
    try:
        revision = migrate.upgrade(writer)
    except sa.exc.DBAPIError as exc:
        raise unavailable(target, exc) from None
    finally:
        writer.dispose()
        reader.dispose()
    click.echo(f"{target.describe()}: schema at revision {revision} (head)")


@db.command("current")
@_data_dir
@_endpoint
def current(data_dir: Path | None, datastore_endpoint: str | None) -> None:
    """Print the schema revision and the store's current and compacted revisions."""
    target = _target(data_dir, datastore_endpoint, create_dir=False)
    _, reader = create_engines(target)
    head = migrate.head_revision()
    try:
        with reader.connect() as conn:
            schema = migrate.current_revision(conn)
            click.echo(f"datastore: {target.describe()}")
            if schema is None:
                click.echo(f"schema: none (head is {head}; run `kybern db upgrade`)")
                return
            state = "head" if schema == head else f"head is {head}; run `kybern db upgrade`"
            click.echo(f"schema: {schema} ({state})")
            newest = conn.execute(sa.select(sa.func.max(kv.c.id))).scalar() or 0
            compacted = (
                conn.execute(sa.select(kv_meta.c.value).where(kv_meta.c.name == COMPACT_REVISION)).scalar()
                or 0
            )
            click.echo(f"revision: {max(newest, compacted)}")
            click.echo(f"compacted: {compacted}")
    except sa.exc.DBAPIError as exc:
        raise unavailable(target, exc) from None
    finally:
        reader.dispose()
