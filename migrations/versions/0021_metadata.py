"""metadata: transfers.metadata and accounts.metadata (jsonb), a GIN index on the transfers'

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 11:00:00

Issue 22: a client's own string keys and values on transfers and accounts (core/metadata.py).
NULL means none: the columns have no default, so adding them rewrites nothing and an insert
without metadata costs what it did; the GIN index (jsonb_path_ops, for ``@>``) is partial and
holds only the transfers that have metadata.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("transfers", sa.Column("metadata", postgresql.JSONB(none_as_null=True), nullable=True))
    op.add_column("accounts", sa.Column("metadata", postgresql.JSONB(none_as_null=True), nullable=True))
    op.create_index(
        "ix_transfers_metadata",
        "transfers",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
        postgresql_where=sa.text("metadata IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_transfers_metadata", table_name="transfers")
    op.drop_column("accounts", "metadata")
    op.drop_column("transfers", "metadata")
