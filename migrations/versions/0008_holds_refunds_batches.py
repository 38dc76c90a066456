"""holds, refunds and batches

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 04:50:00

Two-phase transfers (HELD, then captured, voided or expired), refunds linked to the
transfer they return, and request batches (atomic ones settle together or not at all).
accounts.held_amount is the sum of the account's open holds: available balance is
balance - held_amount, and reconcile checks the sum against the HELD transfers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'PENDING', 'PROCESSING', 'COMPLETED', 'FAILED'"
NEW_STATUSES = OLD_STATUSES + ", 'HELD', 'VOIDED', 'EXPIRED'"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_transfers_transfer_status"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_status"), "transfers", f"status IN ({NEW_STATUSES})")
    op.drop_constraint(op.f("ck_transfers_transfer_kind"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_kind"), "transfers", "kind IN ('TRANSFER', 'DEPOSIT', 'REFUND')")

    op.create_table(
        "transfer_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("atomic", sa.Boolean(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_transfer_batches_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_batches")),
        sa.CheckConstraint("item_count BETWEEN 1 AND 1000", name=op.f("ck_transfer_batches_item_count_range")),
    )

    op.add_column("transfers", sa.Column("hold", sa.Boolean(), server_default="false", nullable=False))
    op.add_column("transfers", sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("transfers", sa.Column("captured_amount", sa.BigInteger(), nullable=True))
    op.add_column("transfers", sa.Column("refund_of", sa.Uuid(), nullable=True))
    op.add_column("transfers", sa.Column("batch_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f("fk_transfers_refund_of_transfers"), "transfers", "transfers", ["refund_of"], ["id"])
    op.create_foreign_key(
        op.f("fk_transfers_batch_id_transfer_batches"), "transfers", "transfer_batches", ["batch_id"], ["id"]
    )
    op.create_check_constraint(op.f("ck_transfers_hold_has_expiry"), "transfers", "NOT hold OR hold_expires_at IS NOT NULL")
    op.create_check_constraint(
        op.f("ck_transfers_captured_within_amount"), "transfers", "captured_amount IS NULL OR (captured_amount > 0 AND captured_amount <= amount)"
    )
    op.create_check_constraint(op.f("ck_transfers_refund_kind"), "transfers", "(kind = 'REFUND') = (refund_of IS NOT NULL)")
    op.create_index("ix_transfers_refund_of", "transfers", ["refund_of"], postgresql_where="refund_of IS NOT NULL")
    op.create_index("ix_transfers_batch_id", "transfers", ["batch_id"], postgresql_where="batch_id IS NOT NULL")
    # The expiry sweep's scan: open holds by expiry.
    op.create_index(
        "ix_transfers_held_expiry", "transfers", ["hold_expires_at"], postgresql_where="status = 'HELD'"
    )

    op.add_column("accounts", sa.Column("held_amount", sa.BigInteger(), server_default="0", nullable=False))
    op.create_check_constraint(op.f("ck_accounts_held_nonneg"), "accounts", "held_amount >= 0")
    op.create_check_constraint(op.f("ck_accounts_held_within_balance"), "accounts", "held_amount <= balance OR kind = 'SETTLEMENT'")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_accounts_held_within_balance"), "accounts", type_="check")
    op.drop_constraint(op.f("ck_accounts_held_nonneg"), "accounts", type_="check")
    op.drop_column("accounts", "held_amount")
    op.drop_index("ix_transfers_held_expiry", table_name="transfers", postgresql_where="status = 'HELD'")
    op.drop_index("ix_transfers_batch_id", table_name="transfers", postgresql_where="batch_id IS NOT NULL")
    op.drop_index("ix_transfers_refund_of", table_name="transfers", postgresql_where="refund_of IS NOT NULL")
    op.drop_constraint(op.f("ck_transfers_refund_kind"), "transfers", type_="check")
    op.drop_constraint(op.f("ck_transfers_captured_within_amount"), "transfers", type_="check")
    op.drop_constraint(op.f("ck_transfers_hold_has_expiry"), "transfers", type_="check")
    op.drop_constraint(op.f("fk_transfers_batch_id_transfer_batches"), "transfers", type_="foreignkey")
    op.drop_constraint(op.f("fk_transfers_refund_of_transfers"), "transfers", type_="foreignkey")
    for column in ("batch_id", "refund_of", "captured_amount", "hold_expires_at", "hold"):
        op.drop_column("transfers", column)
    op.drop_table("transfer_batches")
    # Refuses (check violation) while refunds or held/voided/expired transfers exist.
    op.drop_constraint(op.f("ck_transfers_transfer_kind"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_kind"), "transfers", "kind IN ('TRANSFER', 'DEPOSIT')")
    op.drop_constraint(op.f("ck_transfers_transfer_status"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_status"), "transfers", f"status IN ({OLD_STATUSES})")
