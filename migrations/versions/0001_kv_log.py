"""The append-only key/value log and its meta table.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from kybern.plugins.sqlstore.schema: a migration
# must keep describing the schema as it was, whatever the code later becomes.
_key = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
_rev = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kv",
        sa.Column("id", _rev, primary_key=True, autoincrement=True),
        sa.Column("name", _key, nullable=False),
        sa.Column("created", sa.Boolean, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("create_revision", _rev, nullable=False),
        sa.Column("prev_revision", _rev, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=True),
        sa.Column("old_value", sa.LargeBinary, nullable=True),
        sa.UniqueConstraint("name", "prev_revision", name="kv_name_prev_revision_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("kv_name_id", "kv", ["name", "id"])
    op.create_table(
        "kv_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", _rev, nullable=False),
    )
    op.bulk_insert(
        sa.table("kv_meta", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
        [{"name": "compact_revision", "value": 0}],
    )


def downgrade() -> None:
    op.drop_table("kv_meta")
    op.drop_index("kv_name_id", table_name="kv")
    op.drop_table("kv")
