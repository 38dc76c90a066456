"""CSV statements: the header API.md fixes, one line per movement, amounts in signed minor units."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

from core.reconciliation.statement import (
    MAX_BANK_REFERENCE,
    MAX_END_TO_END_ID,
    MAX_REFERENCE,
    Statement,
    StatementFormat,
    StatementLine,
    currency,
    decode_text,
    invalid,
    minor_units,
    refuse_repeated_lines,
    text_field,
)

HEADER = ["booking_date", "amount", "currency", "reference", "end_to_end_id", "counterparty"]
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse(body: bytes) -> Statement:
    """The whole file or ``RECONCILIATION_FILE_INVALID`` naming its first bad line. ``reference``
    is the bank's reference of the line (its identity); the matcher also reads it for a
    customer's inbound reference. One statement is of one account, so of one currency."""
    rows = csv.reader(io.StringIO(decode_text(body), newline=""), strict=True)
    try:
        header = next(rows, None)
        if header != HEADER:
            raise invalid("line 1", f"the header must be exactly {','.join(HEADER)}")
        lines = [_line(rows.line_num, row) for row in rows if row]
    except csv.Error as exc:
        raise invalid(f"line {rows.line_num}", f"not valid CSV ({exc})") from None
    if lines and len({line.currency for line in lines}) > 1:
        first = lines[0]
        other = next(line for line in lines if line.currency != first.currency)
        raise invalid(other.where, f"currency {other.currency} differs from the statement's {first.currency}")
    refuse_repeated_lines(lines)
    return Statement(StatementFormat.CSV, None, lines)


def _line(number: int, row: list[str]) -> StatementLine:
    where = f"line {number}"
    if len(row) != len(HEADER):
        raise invalid(where, f"{len(row)} fields, the header has {len(HEADER)}")
    booking_date, amount, code, reference, end_to_end_id, counterparty = row
    code = currency(where, code)
    return StatementLine(
        where=where,
        account=code,  # a CSV statement names no account: the bank's correspondent account in its currency
        currency=code,
        booking_date=_date(where, booking_date),
        amount=minor_units(where, amount, signed=True),
        bank_reference=text_field(where, "reference", reference, MAX_BANK_REFERENCE, required=True) or "",
        end_to_end_id=text_field(where, "end_to_end_id", end_to_end_id, MAX_END_TO_END_ID),
        reference=text_field(where, "reference", reference, MAX_REFERENCE),
        counterparty=text_field(where, "counterparty", counterparty, MAX_REFERENCE),
    )


def _date(where: str, text: str) -> date:
    if not _DATE.fullmatch(text):
        raise invalid(where, f"booking_date {text[:16]!r} is not YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise invalid(where, f"booking_date {text} is not a date") from None
