"""payouts: the bank's in-transit accounts, payouts and their pain.001 files

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 13:45:00

A payout's transfer moves its amount from the customer to the bank's IN_TRANSIT account of the
currency (one per currency, owned by nobody, like SETTLEMENT); a payout file takes the PENDING
payouts whose transfer completed and makes them SENT. payout.sent, payout.settled and
payout.returned join the event type CHECKs of webhook_events and webhook_deliveries.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENTS = (
    "transfer.pending", "transfer.completed", "transfer.failed", "transfer.held", "transfer.voided",
    "transfer.expired", "account.credited", "account.debited", "balance.monitor_triggered",
)  # fmt: skip
NEW_EVENTS = (*OLD_EVENTS, "payout.sent", "payout.settled", "payout.returned")
EVENT_CHECKS = (
    ("webhook_events", "ck_webhook_events_webhook_event_type"),
    ("webhook_deliveries", "ck_webhook_deliveries_webhook_delivery_event_type"),
)
MAX_AMOUNT = 9007199254740991


def _event_checks(events: Sequence[str]) -> None:
    listed = ", ".join(f"'{e}'" for e in events)
    for table, name in EVENT_CHECKS:
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, f"event_type IN ({listed})")


def _account_kinds(kinds: str, bank_kinds: str) -> None:
    op.drop_constraint(op.f("ck_accounts_account_kind"), "accounts", type_="check")
    op.create_check_constraint(op.f("ck_accounts_account_kind"), "accounts", f"kind IN ({kinds})")
    op.drop_constraint(op.f("ck_accounts_owner_matches_kind"), "accounts", type_="check")
    op.create_check_constraint(
        op.f("ck_accounts_owner_matches_kind"), "accounts", f"(kind IN ({bank_kinds})) = (user_id IS NULL)"
    )


def upgrade() -> None:
    _account_kinds("'CUSTOMER', 'SETTLEMENT', 'IN_TRANSIT'", "'SETTLEMENT', 'IN_TRANSIT'")
    op.create_index(
        "uq_accounts_in_transit_currency",
        "accounts",
        ["currency"],
        unique=True,
        postgresql_where="kind = 'IN_TRANSIT'",
    )
    _event_checks(NEW_EVENTS)

    op.create_table(
        "payout_files",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("payout_count", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=35), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("payout_count > 0", name=op.f("ck_payout_files_payout_count_positive")),
        sa.CheckConstraint(f"total BETWEEN 1 AND {MAX_AMOUNT}", name=op.f("ck_payout_files_total_range")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_payout_files_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_files")),
        sa.UniqueConstraint("message_id", name=op.f("uq_payout_files_message_id")),
    )
    op.create_table(
        "payouts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("source_account_id", sa.Uuid(), nullable=False),
        sa.Column("counterparty_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=140), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "SENT",
                "SETTLED",
                "RETURNED",
                "FAILED",
                name="payout_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"amount BETWEEN 1 AND {MAX_AMOUNT}", name=op.f("ck_payouts_amount_range")),
        sa.CheckConstraint(
            "(file_id IS NULL) = (status IN ('PENDING', 'FAILED'))", name=op.f("ck_payouts_file_iff_sent")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_payouts_user_id_users")),
        sa.ForeignKeyConstraint(
            ["source_account_id"], ["accounts.id"], name=op.f("fk_payouts_source_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["counterparty_id"], ["counterparties.id"], name=op.f("fk_payouts_counterparty_id_counterparties")
        ),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], name=op.f("fk_payouts_transfer_id_transfers")),
        sa.ForeignKeyConstraint(["file_id"], ["payout_files.id"], name=op.f("fk_payouts_file_id_payout_files")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("end_to_end_id", name=op.f("uq_payouts_end_to_end_id")),
        sa.UniqueConstraint("transfer_id", name=op.f("uq_payouts_transfer_id")),
    )
    op.create_index("ix_payouts_user_created", "payouts", ["user_id", "created_at", "id"])
    op.create_index("ix_payouts_created_id", "payouts", ["created_at", "id"])
    op.create_index("ix_payouts_file_id", "payouts", ["file_id"], postgresql_where="file_id IS NOT NULL")
    op.create_index(
        "ix_payouts_pending_currency",
        "payouts",
        ["currency", "created_at", "id"],
        postgresql_where="status = 'PENDING'",
    )


def downgrade() -> None:
    op.drop_table("payouts")
    op.drop_table("payout_files")
    op.execute("DELETE FROM webhook_deliveries WHERE event_type LIKE 'payout.%'")
    op.execute("DELETE FROM webhook_events WHERE event_type LIKE 'payout.%'")
    _event_checks(OLD_EVENTS)
    # Refuses (check violation) while in-transit accounts exist.
    op.drop_index("uq_accounts_in_transit_currency", table_name="accounts", postgresql_where="kind = 'IN_TRANSIT'")
    _account_kinds("'CUSTOMER', 'SETTLEMENT'", "'SETTLEMENT'")
