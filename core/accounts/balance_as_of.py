"""An account's balance as of an instant, from the ledger in the order it was applied.

The balance after every entry applied at or before ``as_of`` is the balance after the entries
before the ledger's cut (core.ledger.cut) at the next instant, ``as_of`` + 1 µs: the same cut
statements make, so ``as_of`` equal to a statement's ``to`` minus 1 µs gives its closing balance.
0 before the account's first entry; the current balance for an instant after now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core import ledger
from core.errors import ValidationFailed
from core.models import Account

_RESOLUTION = timedelta(microseconds=1)  # the database's and Python's


@dataclass(frozen=True)
class BalanceAsOf:
    account_id: uuid.UUID
    currency: str
    as_of: datetime
    balance: int


def balance_as_of(session: Session, account: Account, as_of: datetime) -> BalanceAsOf:
    """The balance of ``account`` after every entry applied at or before ``as_of`` (aware).
    Read it in one snapshot (the cut and the probe are two queries)."""
    try:
        as_of = as_of.astimezone(UTC)
    except OverflowError as error:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise ValidationFailed(
            "as_of out of range", errors={"as_of": ["Must be between years 1 and 9999 in UTC."]}
        ) from error
    try:
        balance = ledger.balance_at(session, account.id, as_of + _RESOLUTION)
    except OverflowError:  # 9999-12-31T23:59:59.999999Z: after every entry
        balance = ledger.balance_before(session, account.id, None)
    return BalanceAsOf(account.id, account.currency, as_of, balance)
