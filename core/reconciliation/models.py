"""Imported statements and their lines. A line's identity (account, booking date, amount, bank
reference) is unique across every import: a file that overlaps an earlier one adds only its new
lines, so no line is matched (and no money moved for it) twice."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, enum_column, insert_stamp
from core.money import MAX_AMOUNT


class LineStatus(enum.StrEnum):
    MATCHED = "MATCHED"
    UNMATCHED = "UNMATCHED"
    RESOLVED = "RESOLVED"


class MatchKind(enum.StrEnum):
    """What a line was matched (or resolved) to."""

    PAYOUT_SETTLED = "PAYOUT_SETTLED"  # a debit: the payout left the correspondent account
    PAYOUT_RETURNED = "PAYOUT_RETURNED"  # a credit carrying a payout's end_to_end_id
    DEPOSIT = "DEPOSIT"  # a credit naming a customer's inbound reference
    CREDIT = "CREDIT"  # resolved: an admin credited it to an account
    IGNORE = "IGNORE"  # resolved: an admin ignored it, with a reason


class ReconciliationImport(Base):
    __tablename__ = "reconciliation_imports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    format: Mapped[str] = mapped_column(String(16))
    # sha256 of the body as sent: the same file twice is refused (409) before anything is read.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    statement_id: Mapped[str | None] = mapped_column(String(35), unique=True)  # camt.053 Stmt/Id
    line_count: Mapped[int] = mapped_column(Integer)  # lines in the file
    already_imported: Mapped[int] = mapped_column(Integer)  # of them, held by an earlier import
    # Per currency: {"USD": {"credits": n, "debits": n, "net": n}} over the file's lines.
    totals: Mapped[dict[str, Any]] = mapped_column(JSONB)
    imported_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (
        CheckConstraint("already_imported BETWEEN 0 AND line_count", name="already_imported_range"),
        Index("ix_reconciliation_imports_created_id", "created_at", "id"),
    )


class ReconciliationLine(Base):
    __tablename__ = "reconciliation_lines"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    import_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_imports.id"))
    line: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within its import (the API's {line})
    source: Mapped[str] = mapped_column(String(80))  # where in the file: "line 7", "Stmt/Ntry[3] (line 40)"
    account: Mapped[str] = mapped_column(String(34))
    currency: Mapped[str] = mapped_column(String(3))
    booking_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units: < 0 left the bank's account
    bank_reference: Mapped[str] = mapped_column(String(64))
    end_to_end_id: Mapped[str | None] = mapped_column(String(35))
    reference: Mapped[str | None] = mapped_column(String(140))
    counterparty: Mapped[str | None] = mapped_column(String(140))
    status: Mapped[LineStatus] = mapped_column(enum_column(LineStatus, "reconciliation_line_status"))
    match: Mapped[MatchKind | None] = mapped_column(enum_column(MatchKind, "reconciliation_match", length=16))
    payout_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payouts.id"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))  # the customer credited
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transfers.id"))  # the money moved for it
    reason: Mapped[str | None] = mapped_column(Text)  # an ignore's reason
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint(
            "account", "booking_date", "amount", "bank_reference", name="uq_reconciliation_lines_identity"
        ),
        UniqueConstraint("import_id", "line", name="uq_reconciliation_lines_import_line"),
        CheckConstraint(f"amount <> 0 AND abs(amount) <= {MAX_AMOUNT}", name="amount_range"),
        CheckConstraint("(status = 'UNMATCHED') = (match IS NULL)", name="match_iff_not_unmatched"),
        CheckConstraint(
            "(status = 'RESOLVED') = (resolved_by IS NOT NULL AND resolved_at IS NOT NULL)", name="resolved_by_someone"
        ),
        CheckConstraint("(match = 'IGNORE') = (reason IS NOT NULL)", name="ignore_has_reason"),
        # A payout is settled by at most one line and returned by at most one.
        Index("uq_reconciliation_lines_payout_match", "payout_id", "match", unique=True),
        # The break list: what is still waiting for an admin.
        Index("ix_reconciliation_lines_unmatched", "import_id", postgresql_where="status = 'UNMATCHED'"),
    )
