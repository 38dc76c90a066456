"""Account statements: opening balance, the period's ledger entries, closing balance.

The period is ``[start, end)`` on the entries' ``created_at``. The opening balance is the sum of
every entry of the account before ``start`` (a balance only ever changes through entries, so
this is the balance at ``start``, whatever order concurrent settlements wrote their entries in),
and the closing balance is opening + the period's entries: the invariant holds by construction.
Read it in one REPEATABLE READ snapshot so the opening and the entries see the same commits.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import NotFound, ValidationFailed
from core.models import Account, LedgerEntry, Role, Transfer, User

# Bounds the response (about 1.5 MB of CSV); a busier period is asked for in shorter pieces. The
# period itself is not bounded: its entries are the cost, and a quiet account's whole history
# (from=1970-01-01...) is one statement.
MAX_ENTRIES = 10_000

CSV_COLUMNS = ("created_at", "transfer_id", "amount", "balance_after", "reference")
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class StatementEntry:
    id: uuid.UUID
    transfer_id: uuid.UUID
    amount: int  # signed: debit < 0 < credit
    balance_after: int
    reference: str | None
    created_at: datetime


@dataclass(frozen=True)
class Statement:
    account_id: uuid.UUID
    currency: str
    start: datetime
    end: datetime
    opening_balance: int
    closing_balance: int
    entries: Sequence[StatementEntry]


def visible_account(session: Session, account_id: uuid.UUID, user: User) -> Account:
    """The account if ``user`` owns it or is an admin; 404 otherwise (existence not revealed)."""
    account = session.get(Account, account_id)
    if account is None or (user.role != Role.ADMIN and account.user_id != user.id):
        raise NotFound("account not found")
    return account


def validate_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("from and to must carry a UTC offset", errors={"from": ["Must be an RFC 3339 instant."]})
    try:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
    except OverflowError as error:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise ValidationFailed(
            "from or to out of range", errors={"from": ["Must be between years 1 and 9999 in UTC."]}
        ) from error
    if start >= end:
        raise ValidationFailed("from must be before to", errors={"to": ["Must be after from."]})
    return start, end


def statement(
    session: Session, account: Account, start: datetime, end: datetime, *, max_entries: int = MAX_ENTRIES
) -> Statement:
    """The statement of ``account`` for ``[start, end)``, entries oldest first (at most ``max_entries``)."""
    start, end = validate_period(start, end)
    opening = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account.id, LedgerEntry.created_at < start
        )
    )
    rows = session.execute(
        select(LedgerEntry, Transfer.reference)
        .join(Transfer, Transfer.id == LedgerEntry.transfer_id)
        .where(LedgerEntry.account_id == account.id, LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        # The order they were applied in, which balance_after follows (created_at cannot tell:
        # one settlement's entries share it, see LedgerEntry.seq).
        .order_by(LedgerEntry.seq)
        .limit(max_entries + 1)
    ).all()
    if len(rows) > max_entries:
        raise ValidationFailed(
            "too many entries for one statement",
            errors={"to": [f"The period holds more than {max_entries} entries; ask for a shorter one."]},
        )
    entries = [
        StatementEntry(e.id, e.transfer_id, e.amount, e.balance_after, reference, e.created_at) for e, reference in rows
    ]
    opening_balance = int(opening or 0)
    return Statement(
        account_id=account.id,
        currency=account.currency,
        start=start,
        end=end,
        opening_balance=opening_balance,
        closing_balance=opening_balance + sum(e.amount for e in entries),
        entries=entries,
    )


def safe_cell(text: str | None) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a quote (OWASP)."""
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(stmt: Statement) -> str:
    """RFC 4180 CSV (CRLF line ends, quoted as needed): a header row, then one row per entry."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in stmt.entries:
        writer.writerow([rfc3339(e.created_at), str(e.transfer_id), e.amount, e.balance_after, safe_cell(e.reference)])
    return out.getvalue()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
