"""reconciliations: imported correspondent statements and their lines; payout settle/return transfers

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03 13:55:00

A line's identity (account, booking_date, amount, bank_reference) is unique across imports, so an
overlapping statement adds only its new lines; a file's digest and a camt.053 statement id are
unique per import. Transfer kinds PAYOUT_SETTLE (in-transit -> settlement) and PAYOUT_RETURN
(back to the customer) are what matched lines move.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_AMOUNT = 9007199254740991
OLD_KINDS = "'TRANSFER', 'DEPOSIT', 'REFUND'"
NEW_KINDS = "'TRANSFER', 'DEPOSIT', 'REFUND', 'PAYOUT_SETTLE', 'PAYOUT_RETURN'"


def _kinds(kinds: str) -> None:
    op.drop_constraint(op.f("ck_transfers_transfer_kind"), "transfers", type_="check")
    op.create_check_constraint(op.f("ck_transfers_transfer_kind"), "transfers", f"kind IN ({kinds})")


def upgrade() -> None:
    _kinds(NEW_KINDS)
    op.create_table(
        "reconciliation_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("statement_id", sa.String(length=35), nullable=True),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("already_imported", sa.Integer(), nullable=False),
        sa.Column("totals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("imported_by", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "already_imported BETWEEN 0 AND line_count", name=op.f("ck_reconciliation_imports_already_imported_range")
        ),
        sa.ForeignKeyConstraint(
            ["imported_by"], ["users.id"], name=op.f("fk_reconciliation_imports_imported_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_imports")),
        sa.UniqueConstraint("digest", name=op.f("uq_reconciliation_imports_digest")),
        sa.UniqueConstraint("statement_id", name=op.f("uq_reconciliation_imports_statement_id")),
    )
    op.create_index("ix_reconciliation_imports_created_id", "reconciliation_imports", ["created_at", "id"])
    op.create_table(
        "reconciliation_lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("account", sa.String(length=34), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("bank_reference", sa.String(length=64), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=True),
        sa.Column("reference", sa.String(length=140), nullable=True),
        sa.Column("counterparty", sa.String(length=140), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "MATCHED",
                "UNMATCHED",
                "RESOLVED",
                name="reconciliation_line_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "match",
            sa.Enum(
                "PAYOUT_SETTLED",
                "PAYOUT_RETURNED",
                "DEPOSIT",
                "CREDIT",
                "IGNORE",
                name="reconciliation_match",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("payout_id", sa.Uuid(), nullable=True),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("transfer_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"amount <> 0 AND abs(amount) <= {MAX_AMOUNT}", name=op.f("ck_reconciliation_lines_amount_range")
        ),
        sa.CheckConstraint(
            "(status = 'UNMATCHED') = (match IS NULL)", name=op.f("ck_reconciliation_lines_match_iff_not_unmatched")
        ),
        sa.CheckConstraint(
            "(status = 'RESOLVED') = (resolved_by IS NOT NULL AND resolved_at IS NOT NULL)",
            name=op.f("ck_reconciliation_lines_resolved_by_someone"),
        ),
        sa.CheckConstraint(
            "(match = 'IGNORE') = (reason IS NOT NULL)", name=op.f("ck_reconciliation_lines_ignore_has_reason")
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["reconciliation_imports.id"],
            name=op.f("fk_reconciliation_lines_import_id_reconciliation_imports"),
        ),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_reconciliation_lines_payout_id_payouts")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_reconciliation_lines_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_reconciliation_lines_transfer_id_transfers")
        ),
        sa.ForeignKeyConstraint(["resolved_by"], ["users.id"], name=op.f("fk_reconciliation_lines_resolved_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_lines")),
        sa.UniqueConstraint(
            "account", "booking_date", "amount", "bank_reference", name="uq_reconciliation_lines_identity"
        ),
        sa.UniqueConstraint("import_id", "line", name="uq_reconciliation_lines_import_line"),
    )
    op.create_index("uq_reconciliation_lines_payout_match", "reconciliation_lines", ["payout_id", "match"], unique=True)
    op.create_index(
        "ix_reconciliation_lines_unmatched",
        "reconciliation_lines",
        ["import_id"],
        postgresql_where="status = 'UNMATCHED'",
    )


def downgrade() -> None:
    op.drop_table("reconciliation_lines")
    op.drop_table("reconciliation_imports")
    # Refuses (check violation) while payout settle/return transfers exist: money moved is not undone.
    _kinds(OLD_KINDS)
