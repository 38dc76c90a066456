"""scheduled transfers: schedules and their runs

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 10:45:00

A schedule (an owner's standing instruction: what to move, an RFC 5545 rule, the short-funds
policy) and one run per occurrence, written with the occurrence's transfer. The run's primary key
(schedule, occurrence) is what makes an occurrence happen at most once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scheduled_transfers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("source_account_id", sa.Uuid(), nullable=False),
        sa.Column("destination_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=140), nullable=True),
        sa.Column("start_at", TS, nullable=False),
        sa.Column("rrule", sa.Text(), nullable=True),
        sa.Column("until", TS, nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column(
            "on_insufficient_funds",
            sa.Enum(
                "fail", "retry", "skip", name="short_funds_policy", native_enum=False, create_constraint=True, length=8
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "ACTIVE",
                "PAUSED",
                "CANCELLED",
                "FINISHED",
                name="schedule_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("next_run_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_scheduled_transfers_amount_positive")),
        sa.CheckConstraint("amount <= 9007199254740991", name=op.f("ck_scheduled_transfers_amount_json_safe")),
        sa.CheckConstraint(
            "source_account_id <> destination_account_id", name=op.f("ck_scheduled_transfers_distinct_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["destination_account_id"],
            ["accounts.id"],
            name=op.f("fk_scheduled_transfers_destination_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["source_account_id"], ["accounts.id"], name=op.f("fk_scheduled_transfers_source_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_scheduled_transfers_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_transfers")),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_scheduled_transfers_idempotency"),
    )
    op.create_index(
        "ix_scheduled_transfers_due", "scheduled_transfers", ["next_run_at"], postgresql_where="status = 'ACTIVE'"
    )
    op.create_index("ix_scheduled_transfers_user_created", "scheduled_transfers", ["user_id", "created_at", "id"])
    op.create_table(
        "scheduled_transfer_runs",
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("occurrence", TS, nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "COMPLETED",
                "FAILED",
                "SKIPPED",
                name="run_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("retry_at", TS, nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["scheduled_transfers.id"],
            name=op.f("fk_scheduled_transfer_runs_schedule_id_scheduled_transfers"),
        ),
        sa.PrimaryKeyConstraint("schedule_id", "occurrence", name=op.f("pk_scheduled_transfer_runs")),
    )
    op.create_index(
        "ix_scheduled_transfer_runs_pending",
        "scheduled_transfer_runs",
        ["schedule_id"],
        postgresql_where="status = 'PENDING'",
    )
    op.create_index("ix_scheduled_transfer_runs_transfer", "scheduled_transfer_runs", ["transfer_id"])


def downgrade() -> None:
    op.drop_table("scheduled_transfer_runs")
    op.drop_table("scheduled_transfers")
