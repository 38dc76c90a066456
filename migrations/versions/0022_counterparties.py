"""counterparties: where a customer's payouts go

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 11:05:00

One destination each: an IBAN (stored compact, checked by schwifty in the service) or a US account
number with its ABA routing number.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "counterparties",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=140), nullable=False),
        sa.Column("iban", sa.String(length=34), nullable=True),
        sa.Column("account_number", sa.String(length=17), nullable=True),
        sa.Column("routing_number", sa.String(length=9), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(iban IS NOT NULL) <> (account_number IS NOT NULL AND routing_number IS NOT NULL)",
            name=op.f("ck_counterparties_one_destination"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_counterparties_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counterparties")),
    )
    op.create_index("ix_counterparties_user_created", "counterparties", ["user_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("counterparties")
