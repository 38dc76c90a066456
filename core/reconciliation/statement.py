"""A correspondent bank's statement as read from any of its formats (camt.053, BAI2, CSV): the
lines the matcher works on, and the checks every format's values pass the same way."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from iso4217 import Currency

from core.errors import ReconciliationFileInvalid
from core.money import MAX_AMOUNT, is_currency


class StatementFormat(enum.StrEnum):
    CAMT053 = "camt.053.001.02"
    BAI2 = "BAI2"
    CSV = "CSV"


@dataclass(frozen=True)
class StatementLine:
    """One booked movement on the bank's account at the correspondent. ``amount`` is signed minor
    units: negative, money left the account (a payout settled); positive, money came in."""

    where: str  # the line or element of the file it was read from, for error messages
    account: str  # the correspondent account the statement is of (CSV: its currency)
    currency: str
    booking_date: date
    amount: int
    bank_reference: str  # the correspondent's own reference: with the above, the line's identity
    end_to_end_id: str | None = None
    reference: str | None = None
    counterparty: str | None = None


class AccountKind(enum.StrEnum):
    IBAN = "IBAN"  # camt.053 Acct/Id/IBAN
    NUMBER = "account number"  # camt.053 Acct/Id/Othr/Id, BAI2 record 03


@dataclass(frozen=True)
class StatementAccount:
    """An account the statement says it is of, as written, and where it says so."""

    where: str
    kind: AccountKind
    value: str


@dataclass(frozen=True)
class Statement:
    format: StatementFormat
    statement_id: str | None  # camt.053 Stmt/Id: the same statement twice is refused
    lines: list[StatementLine]
    accounts: tuple[StatementAccount, ...] = ()  # CSV names none


MAX_REFERENCE = 140
MAX_BANK_REFERENCE = 64
MAX_END_TO_END_ID = 35
_BOMS = (b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")


def invalid(where: str, detail: str) -> ReconciliationFileInvalid:
    """The file's fault, named: ``where`` is ``line N`` or an element path."""
    return ReconciliationFileInvalid(f"{where}: {detail}", where=where)


def refuse_bom(body: bytes) -> None:
    # A byte order mark says an editor or a converter touched the file on the way (and UTF-16
    # would be read as garbage by the CSV and BAI2 readers): refused, not silently stripped.
    if body.startswith(_BOMS):
        raise invalid("byte 0", "the file starts with a byte order mark; send it as plain UTF-8 without one")


def decode_text(body: bytes) -> str:
    refuse_bom(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise invalid(f"line {line}", "not valid UTF-8") from None
    if "\x00" in text:
        raise invalid(f"line {text[: text.index(chr(0))].count(chr(10)) + 1}", "contains a NUL character")
    return text


def currency(where: str, code: str) -> str:
    if not is_currency(code):
        raise invalid(where, f"{code[:8]!r} is not an ISO 4217 currency code")
    return code


_MINOR_UNITS = re.compile(r"-?[0-9]{1,16}")


def minor_units(where: str, text: str, *, signed: bool) -> int:
    """An amount already in minor units (CSV, BAI2): digits only, no fraction, not zero."""
    if not _MINOR_UNITS.fullmatch(text) or (text.startswith("-") and not signed):
        raise invalid(where, f"amount {text[:24]!r} is not a whole number of minor units")
    return bounded(where, int(text))


def decimal_to_minor(where: str, text: str, code: str) -> int:
    """A decimal amount in major units (camt.053 ``125.50``) in minor units of ``code``; more
    decimals than the currency has (``10.505`` USD, ``100.5`` JPY) is a fraction: refused."""
    exponent = Currency(code).exponent
    if exponent is None:
        raise invalid(where, f"{code} has no minor unit")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise invalid(where, f"amount {text[:24]!r} is not a number") from None
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise invalid(where, f"amount {text[:24]} has a fraction of {code}'s minor unit")
    return bounded(where, int(minor))


def bounded(where: str, amount: int) -> int:
    if amount == 0:
        raise invalid(where, "amount is zero")
    if abs(amount) > MAX_AMOUNT:
        raise invalid(where, f"amount is beyond {MAX_AMOUNT} minor units")
    return amount


def text_field(where: str, name: str, value: str | None, limit: int, *, required: bool = False) -> str | None:
    value = (value or "").strip() or None
    if value is None:
        if required:
            raise invalid(where, f"{name} is missing")
        return None
    if len(value) > limit:
        raise invalid(where, f"{name} is longer than {limit} characters")
    return value


def refuse_repeated_lines(lines: list[StatementLine]) -> None:
    """Two lines of one file with the same identity cannot both be booked: the second would be
    taken for the first when a later file overlaps this one."""
    seen: dict[tuple[object, ...], str] = {}
    for line in lines:
        key = (line.account, line.booking_date, line.amount, line.bank_reference)
        if key in seen:
            raise invalid(line.where, f"repeats {seen[key]} (same account, booking date, amount and bank reference)")
        seen[key] = line.where
