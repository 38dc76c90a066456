"""hold actions: how each hold ended, and the hold webhook events

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 05:00:00

transfer_actions records a hold's capture, void or expiry: unique per transfer, so racing
captures, voids and the expiry sweep give exactly one outcome; a capture or void is bound to
its caller's Idempotency-Key. Webhook event types gain transfer.held, transfer.voided and
transfer.expired.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENTS = ("transfer.pending", "transfer.completed", "transfer.failed", "account.credited", "account.debited")
NEW_EVENTS = (*OLD_EVENTS[:3], "transfer.held", "transfer.voided", "transfer.expired", *OLD_EVENTS[3:])
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
    op.create_table(
        "transfer_actions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column(
            "action",
            sa.Enum("CAPTURE", "VOID", "EXPIRE", name="hold_action", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("initiated_by", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_transfer_actions_amount_positive")),
        sa.CheckConstraint(
            "(action = 'EXPIRE') = (initiated_by IS NULL)"
            " AND (initiated_by IS NULL) = (idempotency_key IS NULL)"
            " AND (idempotency_key IS NULL) = (request_hash IS NULL)",
            name=op.f("ck_transfer_actions_requested_by_caller"),
        ),
        sa.ForeignKeyConstraint(["initiated_by"], ["users.id"], name=op.f("fk_transfer_actions_initiated_by_users")),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_transfer_actions_transfer_id_transfers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_actions")),
        sa.UniqueConstraint("initiated_by", "idempotency_key", name="uq_transfer_actions_idempotency"),
        sa.UniqueConstraint("transfer_id", name=op.f("uq_transfer_actions_transfer_id")),
    )
    _event_checks(NEW_EVENTS)


def downgrade() -> None:
    # Refuses (check violation) while hold events are in the outbox or deliveries.
    _event_checks(OLD_EVENTS)
    op.drop_table("transfer_actions")
