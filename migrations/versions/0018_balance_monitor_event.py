"""balance monitor event: balance.monitor_triggered in the outbox and its deliveries

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 10:05:00

A balance monitor (migration 0015) fires balance.monitor_triggered from the transaction that
moved the balance; the event type CHECKs of webhook_events and webhook_deliveries list it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENTS = (
    "transfer.pending", "transfer.completed", "transfer.failed", "transfer.held", "transfer.voided",
    "transfer.expired", "account.credited", "account.debited",
)  # fmt: skip
NEW_EVENTS = (*OLD_EVENTS, "balance.monitor_triggered")
EVENT_CHECKS = (
    ("webhook_events", "ck_webhook_events_webhook_event_type"),
    ("webhook_deliveries", "ck_webhook_deliveries_webhook_delivery_event_type"),
)


def _event_checks(events: Sequence[str]) -> None:
    listed = ", ".join(f"'{e}'" for e in events)
    for table, name in EVENT_CHECKS:
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, f"event_type IN ({listed})")


def upgrade() -> None:
    _event_checks(NEW_EVENTS)


def downgrade() -> None:
    op.execute("DELETE FROM webhook_deliveries WHERE event_type = 'balance.monitor_triggered'")
    op.execute("DELETE FROM webhook_events WHERE event_type = 'balance.monitor_triggered'")
    _event_checks(OLD_EVENTS)
