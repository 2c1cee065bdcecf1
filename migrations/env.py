"""Alembic environment for kybern's SQL store.

kybern never ships an alembic.ini: the store builds the alembic ``Config`` in code and
passes an open connection in ``config.attributes["connection"]``, so an installed wheel
migrates its own database. Only online migrations exist; there is no offline SQL mode.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("kybern migrations run only through kybern (`kybern db upgrade`)")

context.configure(connection=connection, target_metadata=None, compare_type=True)

with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # two processes starting on an empty database must not both create the tables
        context.execute("SELECT pg_advisory_xact_lock(7352418301)")
    context.run_migrations()
