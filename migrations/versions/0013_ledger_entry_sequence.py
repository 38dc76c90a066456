"""ledger entries: a sequence in the order they were applied

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 12:50:00

The entries one settlement batch writes share created_at (its transaction's start), and a
transaction that waited for an account's lock may have started before the one that held it, so
created_at cannot order an account's entries. ``seq`` is drawn when the row is inserted, which is
after its account's row lock: per account it follows the order the entries were applied, which is
the order their balance_after values chain in. Adding it rewrites the table (existing rows are
numbered in their physical order).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ledger_entries", sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False))
    op.create_index("ix_ledger_entries_account_seq", "ledger_entries", ["account_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_account_seq", table_name="ledger_entries")
    op.drop_column("ledger_entries", "seq")
