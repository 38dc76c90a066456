"""reconcile checkpoints: where the last clean reconcile pass ended, for --incremental

Each row is a clean pass's horizon, the xmin of its snapshot: every transaction below it was
checked. ``flask reconcile --incremental`` checks only the transfers and accounts that audit
rows of later transactions name; a full pass (the default) ignores the checkpoints.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("horizon", sa.BigInteger(), nullable=False),
        sa.Column("full_pass", sa.Boolean(), nullable=False),
        sa.Column("accounts_checked", sa.BigInteger(), nullable=False),
        sa.Column("transfers_checked", sa.BigInteger(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconcile_checkpoints")
