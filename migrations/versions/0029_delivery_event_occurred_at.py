"""delivery event occurred_at: webhook_deliveries.event_occurred_at, the rest of the event's key

webhook_events is partitioned by day of ``occurred_at`` and keyed by (id, occurred_at) (migration
0028). A delivery that names its event by id alone makes the worker's claim probe every day
partition for it; with the event's ``occurred_at`` too, the lookup reads one partition.

Nullable and not backfilled: adding it is a catalogue change only (no rewrite, no scan of the
deliveries), and the worker finds a delivery made before it by id alone, as before; such
deliveries leave with their day (30 days).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("event_occurred_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "event_occurred_at")
