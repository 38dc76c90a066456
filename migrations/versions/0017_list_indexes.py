"""list indexes: every transfer and user list answered from an index in its own order

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 10:30:00

Issue 28: a customer's GET /transfers filtered ``source IN (theirs) OR destination IN (theirs)``
and walked the whole (created_at, id) index to find one page of their rows (0.7 s at 2 million
transfers); an admin's status filter with no match read a whole index; the admin user list
sorted every user. core/transfers/queries.py now reads one range per account, side and status:
the single-column account indexes give way to (account, status, created_at, id), which serve
the foreign keys' lookups as well; (status, created_at, id) answers an admin's status filter.
The users get (created_at, id) and (kyc_status, created_at, id).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRANSFERS = {
    "ix_transfers_status_created": ["status", "created_at", "id"],
    "ix_transfers_source_status_created": ["source_account_id", "status", "created_at", "id"],
    "ix_transfers_destination_status_created": ["destination_account_id", "status", "created_at", "id"],
}
_USERS = {
    "ix_users_created_id": ["created_at", "id"],
    "ix_users_kyc_status_created": ["kyc_status", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in _TRANSFERS.items():
        op.create_index(name, "transfers", columns)
    for name, columns in _USERS.items():
        op.create_index(name, "users", columns)
    op.drop_index("ix_transfers_source_account_id", table_name="transfers")
    op.drop_index("ix_transfers_destination_account_id", table_name="transfers")


def downgrade() -> None:
    op.create_index("ix_transfers_source_account_id", "transfers", ["source_account_id"])
    op.create_index("ix_transfers_destination_account_id", "transfers", ["destination_account_id"])
    for name in _USERS:
        op.drop_index(name, table_name="users")
    for name in _TRANSFERS:
        op.drop_index(name, table_name="transfers")
