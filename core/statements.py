"""Account statements: opening balance, the period's ledger entries, closing balance.

The period ``[start, end)`` is cut in the order the entries were applied (``seq``), never by
sorting on ``created_at``: it holds the entries from the ledger's cut at ``start`` up to its cut
at ``end`` (``core.ledger.cut``: the first entry, in apply order, created at or after the
instant). So the opening balance is the balance_after of the entry just before the period (one
index probe), each entry's balance_after is the previous one's plus its amount, the closing
balance is the last entry's balance_after, and consecutive periods join exactly, also when
concurrent settlements wrote entries whose created_at is out of apply order (such an entry falls
in the period where it was applied). Everything is read in one REPEATABLE READ snapshot.

JSON comes in pages of at most ``MAX_ENTRIES`` entries (``next_cursor``); CSV is streamed in
chunks, whatever the period's length (``stream``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core import ledger
from core.errors import NotFound, ValidationFailed
from core.models import Account, LedgerEntry, Role, Transfer, User

# Entries in one JSON page (about 1.5 MB); a longer period continues with next_cursor.
MAX_ENTRIES = 10_000
# Rows a streamed CSV reads, and writes out, at a time.
CSV_CHUNK_ROWS = 1_000

CSV_COLUMNS = ("created_at", "transfer_id", "amount", "balance_after", "reference")
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP
# "CSV injection"); they still see one after leading blanks or invisible characters.
_FORMULA_START = ("=", "+", "-", "@")
_CONTROL_START = ("\t", "\r")


class StatementEntry(NamedTuple):
    """One row of the statement's query as it comes (a plain tuple: a heavy account's statement
    has thousands, and each one costs nothing beyond its values)."""

    id: uuid.UUID
    transfer_id: uuid.UUID
    amount: int  # signed: debit < 0 < credit
    balance_after: int
    reference: str | None
    created_at: datetime
    seq: int  # where the entry lies in apply order (the cursor's key); not shown


@dataclass(frozen=True)
class Period:
    """Where ``[start, end)`` lies in the account's apply order: entries with
    ``first_seq <= seq < end_seq``. ``first_seq`` None: no entry of the period exists yet (all
    are before ``start``); ``end_seq`` None: none after it yet, or (a JSON page's) not looked
    for: ``statement`` finds it among the entries it reads (``_until_end``)."""

    account_id: uuid.UUID
    currency: str
    start: datetime
    end: datetime
    first_seq: int | None
    end_seq: int | None
    opening_balance: int


@dataclass(frozen=True)
class Statement:
    account_id: uuid.UUID
    currency: str
    start: datetime
    end: datetime
    opening_balance: int  # the period's, on every page
    closing_balance: int | None  # on the last page only
    entries: Sequence[StatementEntry]
    next_cursor: str | None  # None on the last page


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


def period(session: Session, account: Account, start: datetime, end: datetime) -> Period:
    """Cut ``[start, end)`` out of the account's entries (see the module's docstring)."""
    p = _started(session, account, *validate_period(start, end))
    # Nothing at or after start means nothing at or after end either: one query less.
    return p if p.first_seq is None else replace(p, end_seq=ledger.cut(session, account.id, p.end))


def statement(
    session: Session,
    account: Account,
    start: datetime,
    end: datetime,
    *,
    cursor: str | None = None,
    max_entries: int | None = None,
) -> Statement:
    """One JSON page of the statement of ``account`` for ``[start, end)``: at most ``max_entries``
    (default ``MAX_ENTRIES``) entries oldest first, from the beginning or after ``cursor`` (a
    page's ``next_cursor``)."""
    max_entries = max_entries or MAX_ENTRIES
    start, end = validate_period(start, end)
    if cursor:
        p, after = _resume(session, account, start, end, cursor)
    else:
        p, after = _started(session, account, start, end), None
    rows = _read(session, _entries(p, after).limit(max_entries + 1)) if p.first_seq is not None else []
    if p.end_seq is None:
        rows, p = _until_end(p, rows)
    more = len(rows) > max_entries
    entries = rows[:max_entries]
    last = entries[-1].balance_after if entries else (p.opening_balance if after is None else after[1])
    return Statement(
        account_id=p.account_id,
        currency=p.currency,
        start=p.start,
        end=p.end,
        opening_balance=p.opening_balance,
        closing_balance=None if more else last,
        entries=entries,
        next_cursor=_encode_cursor(p, entries[-1]) if more else None,
    )


def _started(session: Session, account: Account, start: datetime, end: datetime) -> Period:
    """``period`` without the cut at ``end``: a JSON page finds it in the entries it reads."""
    return _between(session, account, start, end, ledger.cut(session, account.id, start), None)


def _between(
    session: Session, account: Account, start: datetime, end: datetime, first: int | None, end_seq: int | None
) -> Period:
    """The period of ``account`` whose entries run from the seq ``first`` to before ``end_seq``."""
    return Period(
        account_id=account.id,
        currency=account.currency,
        start=start,
        end=end,
        first_seq=first,
        end_seq=end_seq,
        opening_balance=ledger.balance_before(session, account.id, first),
    )


def _until_end(p: Period, rows: list[StatementEntry]) -> tuple[list[StatementEntry], Period]:
    """The entries of ``rows`` before the ledger's cut at ``p.end``, and ``p`` with that cut if it
    is among them. ``rows`` are the entries from the period's start (or a page's last entry) on,
    in apply order, with no upper bound. This is ``ledger.cut`` at ``end``, exactly: the cut is
    the smallest seq of the entries created at or after ``end``; each of them was created after
    ``start`` too, so it is at or after the cut at ``start`` (the smallest seq of those), and it
    is after the previous pages' entries, which were read up to here and none of which was
    created at or after ``end``. So it is the first entry of ``rows`` created at or after
    ``end``, if it is among them; if not, either no entry is (``rows`` holds all entries since,
    the period is open) or the page is full and the next one looks further. It reads no entry
    the page does not give (plus the one that tells a next page exists), where the cut costs
    512 entries, and all the entries since ``end`` for a past period of a busy account."""
    for i, e in enumerate(rows):
        if e.created_at >= p.end:
            return rows[:i], replace(p, end_seq=e.seq)
    return rows, p


def frozen(session: Session, p: Period) -> Period:
    """``p`` with its end fixed at what has been applied so far if it is still open (no entry at or
    after ``end`` yet): then its range of seqs holds only committed entries, which never change."""
    if p.first_seq is None or p.end_seq is not None:
        return p
    last = session.scalar(select(func.max(LedgerEntry.seq)).where(LedgerEntry.account_id == p.account_id))
    return replace(p, end_seq=(last or p.first_seq) + 1)


def stream(sessions: Callable[[], Session], p: Period, *, chunk_rows: int | None = None) -> Iterator[StatementEntry]:
    """The entries of a frozen period (``frozen``) oldest first, ``chunk_rows`` at a time, each
    chunk one short read of the (account_id, seq) index in a session of its own: memory stays
    constant whatever the period's length, and no transaction stays open while a slow client
    reads (it would hold back vacuum, and Postgres ends one idle for a minute). The range of seqs
    is fixed and its entries are committed and append-only, so the chunks are one consistent
    read."""
    if p.first_seq is None:
        return
    assert p.end_seq is not None, "stream a frozen period"
    chunk_rows = chunk_rows or CSV_CHUNK_ROWS
    after: tuple[int, int] | None = None
    while True:
        with sessions() as session:
            rows = _read(session, _entries(p, after).limit(chunk_rows))
        yield from rows
        if len(rows) < chunk_rows:
            return
        after = (rows[-1].seq, rows[-1].balance_after)


# The columns of StatementEntry, in its order: one Core query of plain values, no ORM object per
# entry (building those was most of a long statement's time).
_COLUMNS = (
    LedgerEntry.id,
    LedgerEntry.transfer_id,
    LedgerEntry.amount,
    LedgerEntry.balance_after,
    Transfer.reference,
    LedgerEntry.created_at,
    LedgerEntry.seq,
)


def _entries(p: Period, after: tuple[int, int] | None) -> Select[Any]:
    """The period's entries after ``after`` (seq, balance_after) in apply order, each with its
    transfer's reference (the JSON page and the CSV chunks read this same query)."""
    assert p.first_seq is not None
    stmt = (
        select(*_COLUMNS)
        .join(Transfer, Transfer.id == LedgerEntry.transfer_id)
        .where(LedgerEntry.account_id == p.account_id, LedgerEntry.seq >= p.first_seq)
        .order_by(LedgerEntry.seq)
    )
    if p.end_seq is not None:
        stmt = stmt.where(LedgerEntry.seq < p.end_seq)
    if after is not None:
        stmt = stmt.where(LedgerEntry.seq > after[0])
    return stmt


def _read(session: Session, stmt: Select[Any]) -> list[StatementEntry]:
    # On the session's connection, not session.execute: plain columns need none of the ORM's
    # result handling, which costs as much again as the rows themselves; and all rows at once
    # (iterating a result fetches them one by one).
    return list(map(StatementEntry._make, session.connection().execute(stmt).all()))


# ---- cursor: the period's place in apply order and the last entry given ----------------------
#
# Opaque to clients (base64url JSON). It carries the period's bounds so that a later page costs
# one index probe, not a new cut; an end not found yet is looked for among the next page's
# entries (``_until_end``).
# It names the account and the period, so it only continues the same request.

_CURSOR_TAG = "statement"


def _encode_cursor(p: Period, e: StatementEntry) -> str:
    raw = [_CURSOR_TAG, str(p.account_id), rfc3339(p.start), rfc3339(p.end), p.first_seq, p.end_seq]
    raw += [e.seq, e.balance_after]
    return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode().rstrip("=")


def _resume(
    session: Session, account: Account, start: datetime, end: datetime, cursor: str
) -> tuple[Period, tuple[int, int]]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        tag, account_id, from_, to, first, end_seq, after, balance = raw
        # BIGINTs (bool is an int too): a value beyond the column's range would fail in Postgres, a 500.
        ints_ok = all(type(v) is int and -(2**63) <= v < 2**63 for v in (first, after, balance)) and (
            end_seq is None or (type(end_seq) is int and end_seq < 2**63)
        )
        if not (tag == _CURSOR_TAG and ints_ok and first <= after and (end_seq is None or after < end_seq)):
            raise ValueError("cursor does not fit")
        if (account_id, from_, to) != (str(account.id), rfc3339(start), rfc3339(end)):
            raise ValueError("cursor of another statement")
    except (ValueError, TypeError) as exc:  # also binascii.Error and JSONDecodeError, ValueErrors
        raise ValidationFailed(
            "invalid cursor", errors={"cursor": ["Invalid cursor: send the same request with its next_cursor."]}
        ) from exc
    return _between(session, account, start, end, first, end_seq), (after, balance)


# ---- CSV -------------------------------------------------------------------------------------


def safe_cell(text: str | None) -> str:
    """A text cell a spreadsheet shows as text: a formula gets a leading quote (OWASP), also one
    behind leading whitespace or invisible format characters (Unicode category Cf, e.g. a zero
    width space or a bidi mark), which spreadsheets skip."""
    if not text:
        return ""
    if text.startswith(_CONTROL_START) or _visible(text).startswith(_FORMULA_START):
        return "'" + text
    return text


def _visible(text: str) -> str:
    """``text`` from its first character that is neither whitespace nor a format character."""
    for i, char in enumerate(text):
        if not (char.isspace() or unicodedata.category(char) == "Cf"):
            return text[i:]
    return ""


def csv_chunks(entries: Iterator[StatementEntry], *, chunk_rows: int | None = None) -> Iterator[str]:
    """RFC 4180 CSV (CRLF line ends, quoted as needed): a header row, then one row per entry,
    written out ``chunk_rows`` rows at a time."""
    chunk_rows = chunk_rows or CSV_CHUNK_ROWS
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for n, e in enumerate(entries, 1):
        writer.writerow([rfc3339(e.created_at), str(e.transfer_id), e.amount, e.balance_after, safe_cell(e.reference)])
        if n % chunk_rows == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
