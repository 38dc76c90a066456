"""events feed: webhook_events.feed_position, given after commit by the relay

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 10:50:00

Issue 22: GET /events lists events by a position the relay gives them once they have committed
(one relay at a time, under an advisory lock), so a reader never skips an event whose
transaction committed after a later-numbered one was listed. The column has no default and its
index is partial (positioned rows only): inserting an event costs what it did. The positions
come from a sequence of their own, never reused after the retention prune deletes old events.
Events already relayed get positions in their sequence order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_events", sa.Column("feed_position", sa.BigInteger(), nullable=True))
    op.execute("CREATE SEQUENCE webhook_events_feed_position_seq AS bigint")
    op.execute(
        """
        WITH ordered AS (
            SELECT id, row_number() OVER (ORDER BY sequence) AS n FROM webhook_events WHERE relayed_at IS NOT NULL
        )
        UPDATE webhook_events e SET feed_position = ordered.n FROM ordered WHERE e.id = ordered.id
        """
    )
    op.execute(
        "SELECT setval('webhook_events_feed_position_seq', COALESCE(max(feed_position), 0) + 1, false)"
        " FROM webhook_events"
    )
    op.create_index(
        "ix_webhook_events_feed_position",
        "webhook_events",
        ["feed_position"],
        unique=True,
        postgresql_where=sa.text("feed_position IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_events_feed_position", table_name="webhook_events")
    op.execute("DROP SEQUENCE webhook_events_feed_position_seq")
    op.drop_column("webhook_events", "feed_position")
