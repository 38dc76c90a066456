"""transfers partition

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 02:30:00

The settlement partition of each transfer (a function of its source account, see
core.transfers.routing) and the drainers' scan: PENDING transfers of a partition in accept
order. Rows accepted before this migration get partition 0; the sweeper re-routes any
PENDING transfer whose partition does not match the current partition count.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("transfers", sa.Column("partition", sa.SmallInteger(), server_default="0", nullable=False))
    op.create_index(
        "ix_transfers_pending_partition",
        "transfers",
        ["partition", "created_at", "id"],
        unique=False,
        postgresql_where="status = 'PENDING'",
    )


def downgrade() -> None:
    op.drop_index("ix_transfers_pending_partition", table_name="transfers", postgresql_where="status = 'PENDING'")
    op.drop_column("transfers", "partition")
