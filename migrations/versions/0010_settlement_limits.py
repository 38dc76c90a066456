"""settlement limits: JSON-safe amounts and balances, the sweeper's requeue count

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 05:00:00

Amounts and balances stay within 2^53-1, the largest integer every JSON client reads exactly
(a write past it fails in the database, whatever code path makes it). requeue_count lets the
sweeper stop re-publishing a transfer that never settles (it is parked and alerted instead).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_AMOUNT = 2**53 - 1


def upgrade() -> None:
    op.add_column("transfers", sa.Column("requeue_count", sa.Integer(), server_default="0", nullable=False))
    op.create_check_constraint(op.f("ck_transfers_amount_json_safe"), "transfers", f"amount <= {MAX_AMOUNT}")
    op.create_check_constraint(
        op.f("ck_accounts_balance_json_safe"), "accounts", f"balance BETWEEN -{MAX_AMOUNT} AND {MAX_AMOUNT}"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_accounts_balance_json_safe"), "accounts", type_="check")
    op.drop_constraint(op.f("ck_transfers_amount_json_safe"), "transfers", type_="check")
    op.drop_column("transfers", "requeue_count")
