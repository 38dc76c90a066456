"""transfer status: no PROCESSING

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:50:00

Settlement is one transaction, so a transfer is PENDING until it is final and PROCESSING was
never written; the API contract no longer lists it. The CHECK constraint now refuses it. A row
that says PROCESSING anyway was settleable like a PENDING one, so it becomes PENDING first.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'PENDING', 'COMPLETED', 'FAILED', 'HELD', 'VOIDED', 'EXPIRED'"
WITH_PROCESSING = "'PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'HELD', 'VOIDED', 'EXPIRED'"


def upgrade() -> None:
    op.execute("UPDATE transfers SET status = 'PENDING' WHERE status = 'PROCESSING'")
    op.drop_constraint(op.f("ck_transfers_transfer_status"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_status"), "transfers", f"status IN ({STATUSES})")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_transfers_transfer_status"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_status"), "transfers", f"status IN ({WITH_PROCESSING})")
