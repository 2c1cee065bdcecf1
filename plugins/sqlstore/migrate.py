"""Running the schema migrations shipped in ``kybern.migrations`` without an alembic.ini.

The alembic ``Config`` is built in code with ``script_location`` pointing into the
installed package, so whatever installed kybern (a wheel, an editable checkout) can bring
its own database up to date at start-up or through ``kybern db upgrade``.
"""

from __future__ import annotations

from pathlib import Path

import kybern.migrations
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from kybern.store import StoreUnavailableError
from loguru import logger

log = logger.bind(component="sqlstore")


def script_location() -> Path:
    return Path(kybern.migrations.__file__).resolve().parent


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return heads[0] if heads else ""


def current_revision(connection: sa.Connection) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine) -> str:
    """Bring the schema to head; return the revision it is at afterwards."""
    with engine.connect() as conn:
        before = current_revision(conn)
        conn.rollback()
        known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        if before is not None and before not in known:
            raise StoreUnavailableError(
                f"database schema is at revision {before}, newer than this kybern knows "
                f"(its newest is {head_revision()}): upgrade kybern"
            )
        try:
            command.upgrade(alembic_config(conn), "head")
        except CommandError as exc:
            raise StoreUnavailableError(f"schema migration failed: {exc}") from None
        conn.commit()
        after = current_revision(conn)
        conn.rollback()
    if before != after:
        log.info("database schema migrated from {} to {}", before or "empty", after)
    return after or ""
