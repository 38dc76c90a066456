"""transfers requeued_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 20:04:29.645520

When the sweeper last re-published a PENDING transfer, so it does so at most once per age
window instead of flooding a backed-up queue with duplicates. Nullable: no rewrite, no lock
beyond the brief ALTER.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('transfers', sa.Column('requeued_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('transfers', 'requeued_at')
