"""audit verify checkpoints: where the last intact verify-audit ended, for --incremental

Each row names the last seal batch a pass found intact and that batch's root. An incremental
pass rechecks that batch's link and root and proves only the batches after it; a full pass
(the default) ignores the checkpoints, so a tampered checkpoint or an altered old region is
still found.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_verify_checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("full_pass", sa.Boolean(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_verify_checkpoints")
