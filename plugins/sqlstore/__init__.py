"""The SQL store plugin: kybern's etcd, on SQLite (default) or PostgreSQL.

Hooks: ``kybern_open_store`` opens :class:`~kybern.plugins.sqlstore.store.SqlStore` for
``sqlite:///PATH`` and ``postgresql://...`` URLs (migrating the schema first);
``kybern_cli_commands`` adds ``kybern db upgrade`` and ``kybern db current``. Store options
and the design are described in :mod:`kybern.plugins.sqlstore.store`.
"""

from __future__ import annotations

from pathlib import Path

import click
from kybern import hookimpl
from kybern.plugins.sqlstore.options import parse_target
from kybern.plugins.sqlstore.store import SqlStore

__all__ = ["SqlStore", "kybern_cli_commands", "kybern_open_store"]


@hookimpl
def kybern_open_store(url: str, data_dir: Path) -> SqlStore | None:
    if parse_target(url) is None:
        return None
    return SqlStore(url, data_dir=data_dir)


@hookimpl
def kybern_cli_commands() -> list[click.Command]:
    from kybern.plugins.sqlstore.cli import db

    return [db]
