"""The tables the store reads and writes, as SQLAlchemy Core objects.

These mirror what the alembic migrations in ``kybern.migrations`` create; the migrations,
not ``metadata.create_all``, own the schema, so a change here needs a new migration too.

``kv`` is one append-only log in the spirit of k3s' kine: every write is a row whose id is
the global revision. A key's current value is its row with the highest id; a delete is a
row with ``deleted`` set. ``prev_revision`` points at the row a write replaced, and the
unique (name, prev_revision) constraint makes two writers that raced from the same row
collide in the database instead of both succeeding.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: keys sort by code point on every backend: SQLite compares UTF-8 bytes (BINARY), and
#: PostgreSQL must use the "C" collation or a locale would reorder keys and break ranges.
KeyType = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
RevType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("id", RevType, primary_key=True, autoincrement=True),
    sa.Column("name", KeyType, nullable=False),
    sa.Column("created", sa.Boolean, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    # 0 on the row that created the key (its own id is the create revision), so a create
    # needs no second statement to learn its id
    sa.Column("create_revision", RevType, nullable=False),
    sa.Column("prev_revision", RevType, nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=True),
    sa.Column("old_value", sa.LargeBinary, nullable=True),
    sa.UniqueConstraint("name", "prev_revision", name="kv_name_prev_revision_key"),
    sa.Index("kv_name_id", "name", "id"),
    sqlite_autoincrement=True,
)

#: small key/value facts about the store; ``compact_revision`` lives here
kv_meta = sa.Table(
    "kv_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", RevType, nullable=False),
)

COMPACT_REVISION = "compact_revision"
