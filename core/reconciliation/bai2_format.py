"""BAI2 statements, read by the ``bai2`` library (its integrity checks on: record counts and
control totals must add up). A transaction (record 16) has no date of its own: it is booked on
its group's as-of date. Amounts are unsigned minor units; the type code says credit or debit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bai2
from bai2.constants import TypeCodeTransaction
from bai2.helpers import IteratorHelper
from bai2.parsers import Bai2FileParser

from core.reconciliation.statement import (
    MAX_BANK_REFERENCE,
    MAX_REFERENCE,
    AccountKind,
    Statement,
    StatementAccount,
    StatementFormat,
    StatementLine,
    currency,
    decode_text,
    invalid,
    minor_units,
    refuse_repeated_lines,
    text_field,
)


class _Numbered:
    """The non-empty lines handed to the library, remembering the last one it took: when it
    fails, the record at fault ends at (or just before) that line."""

    def __init__(self, text: str) -> None:
        self.lines = [(n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]
        self.taken = 0

    def __iter__(self) -> Iterator[str]:
        for index, (_n, line) in enumerate(self.lines):
            self.taken = index + 1
            yield line

    def starting(self, code: str) -> list[int]:
        return [n for n, line in self.lines if line.startswith(code + ",")]

    def line_of(self, index: int) -> int:
        return self.lines[min(index, len(self.lines) - 1)][0] if self.lines else 1


def parse(body: bytes) -> Statement:
    numbered = _Numbered(decode_text(body))
    helper: IteratorHelper | None = None
    try:
        helper = IteratorHelper(iter(numbered))
        parsed = Bai2FileParser(helper, check_integrity=True).parse()
    except Exception as exc:  # the library raises ValueError, KeyError, its own exceptions...
        # The library reads one line ahead of the record it is on.
        at = numbered.line_of(max(numbered.taken - 2, 0)) if helper is not None else 1
        raise invalid(f"line {at}", f"not a valid BAI2 file ({type(exc).__name__}: {str(exc)[:200]})") from None
    accounts: list[StatementAccount] = []
    lines = list(_lines(parsed, numbered, accounts))
    refuse_repeated_lines(lines)
    return Statement(StatementFormat.BAI2, None, lines, tuple(accounts))


def _lines(parsed: bai2.models.Bai2File, numbered: _Numbered, named: list[StatementAccount]) -> Iterator[StatementLine]:
    # The library keeps no line numbers: the k-th account (03) and transaction (16) it read are
    # the k-th such records of the file, in order.
    accounts = iter(numbered.starting("03"))
    details = iter(numbered.starting("16"))
    groups = iter(numbered.starting("02"))
    for group in parsed.children:
        group_line = next(groups)
        group_currency = group.header.currency
        booked_on = group.header.as_of_date
        if booked_on is None:
            raise invalid(f"line {group_line}", "the group (02) has no as-of date")
        for account in group.children:
            where = f"line {next(accounts)}"
            code = currency(where, account.header.currency or group_currency)
            if code != group_currency:
                raise invalid(where, f"account currency {code} differs from its group's {group_currency}")
            number = text_field(where, "account number", account.header.customer_account_number, 34, required=True)
            named.append(StatementAccount(where, AccountKind.NUMBER, str(number)))
            for detail in account.children:
                yield _line(detail, f"line {next(details)}", str(number), code, booked_on)


def _line(detail: Any, where: str, account: str, code: str, booked_on: Any) -> StatementLine:
    raw_amount = detail.rows[0][1].split(",")[1]  # checked as written: int() would take "1_000" or "+5"
    amount = minor_units(where, raw_amount, signed=False)
    kind = detail.type_code.transaction
    if kind not in (TypeCodeTransaction.credit, TypeCodeTransaction.debit):
        raise invalid(where, f"type code {detail.type_code.code} is neither a credit nor a debit")
    text = text_field(where, "text", detail.text, MAX_REFERENCE)
    return StatementLine(
        where=where,
        account=account,
        currency=code,
        booking_date=booked_on,
        amount=amount if kind is TypeCodeTransaction.credit else -amount,
        bank_reference=text_field(where, "bank reference", detail.bank_reference, MAX_BANK_REFERENCE, required=True)
        or "",
        # BAI2 has no end-to-end field: the originator's reference (customer reference) carries it.
        end_to_end_id=text_field(where, "customer reference", detail.customer_reference, 35),
        reference=text,
        counterparty=None,
    )
