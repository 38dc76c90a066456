"""Outgoing use per account and UTC calendar period: what daily and monthly limits are checked against.

Use counts the account's TRANSFER debits that are COMPLETED and its holds while HELD (the
captured amount once captured, nothing once voided or expired); deposits and refunds do not
count. A transfer counts in the day and the month of its accept time (``created_at``, UTC).
Each (account, period) has a running total in ``account_usage``, written under the account's
row lock in the transaction that changes what it counts (settlement, capture, void, expiry), so
a check reads one row, never the account's history, and redelivery or a crash mid-batch cannot
count anything twice (the write commits with the transfer's status, or not at all).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.models import AccountUsage, TransferKind

DAY, MONTH = "DAY", "MONTH"
Key = tuple[uuid.UUID, str, date]  # (account, period, first day of the period)

_U = AccountUsage.__table__

# Absolute totals, decided under the accounts' row locks: one statement for a whole batch (and
# settlement runs it as a CTE of its balances' UPDATE: one round trip for both).
WRITE_SQL = (
    "INSERT INTO account_usage (account_id, period, starts_on, used)"
    " SELECT * FROM unnest(CAST(:use_ids AS uuid[]), CAST(:use_periods AS varchar[]), CAST(:use_starts AS date[]),"
    " CAST(:use_used AS bigint[]))"
    " ON CONFLICT (account_id, period, starts_on) DO UPDATE SET used = EXCLUDED.used"
)
_WRITE = text(WRITE_SQL)
_READ = text(
    "SELECT u.account_id, u.period, u.starts_on, u.used FROM account_usage u"
    " JOIN unnest(CAST(:ids AS uuid[]), CAST(:periods AS varchar[]), CAST(:starts AS date[])) AS k(id, period, starts)"
    " ON u.account_id = k.id AND u.period = k.period AND u.starts_on = k.starts"
)
# A hold's use given back (its void, expiry, or the part a capture did not take).
_RELEASE = text(
    "UPDATE account_usage SET used = used - r.amount"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:periods AS varchar[]), CAST(:starts AS date[]),"
    " CAST(:amounts AS bigint[])) AS r(account_id, period, starts_on, amount)"
    " WHERE account_usage.account_id = r.account_id AND account_usage.period = r.period"
    " AND account_usage.starts_on = r.starts_on"
)
_CURRENT = text(
    "SELECT period, used FROM account_usage WHERE account_id = :account_id AND ("
    " (period = 'DAY' AND starts_on = CAST(now() AT TIME ZONE 'UTC' AS date))"
    " OR (period = 'MONTH' AND starts_on = CAST(date_trunc('month', now() AT TIME ZONE 'UTC') AS date)))"
)


def counts(kind: Any) -> bool:
    """Whether a transfer of this kind is outgoing use of its source."""
    return bool(kind == TransferKind.TRANSFER)


def periods(account_id: uuid.UUID, accepted_at: datetime) -> tuple[Key, Key]:
    """The day and the month (UTC) a transfer accepted at ``accepted_at`` counts in."""
    day = accepted_at.astimezone(UTC).date()
    return (account_id, DAY, day), (account_id, MONTH, day.replace(day=1))


def read(session: Session, keys: Iterable[Key]) -> dict[Key, int]:
    """The running totals of ``keys`` (0 where none yet): read under the accounts' row locks."""
    wanted = sorted(set(keys))
    used = dict.fromkeys(wanted, 0)
    if wanted:
        rows = session.execute(
            _READ,
            {"ids": [k[0] for k in wanted], "periods": [k[1] for k in wanted], "starts": [k[2] for k in wanted]},
        )
        used.update({(r.account_id, r.period, r.starts_on): r.used for r in rows})
    return used


def write(session: Session, totals: Mapping[Key, int]) -> None:
    """Set these running totals (decided under the accounts' row locks): one statement."""
    if totals:
        session.execute(_WRITE, write_params(totals))


def write_params(totals: Mapping[Key, int]) -> dict[str, list[Any]]:
    """``WRITE_SQL``'s parameters for these totals (empty lists write nothing)."""
    keys = sorted(totals)
    return {
        "use_ids": [k[0] for k in keys],
        "use_periods": [k[1] for k in keys],
        "use_starts": [k[2] for k in keys],
        "use_used": [totals[k] for k in keys],
    }


def release(session: Session, holds: Iterable[tuple[uuid.UUID, datetime, int]]) -> None:
    """Give back ``amount`` of the use of holds ``(source, accepted_at, amount)``, in the periods
    they counted in: one statement. The caller holds the sources' row locks."""
    amounts: dict[Key, int] = {}
    for account_id, accepted_at, amount in holds:
        if amount:
            for key in periods(account_id, accepted_at):
                amounts[key] = amounts.get(key, 0) + amount
    if not amounts:
        return
    keys = sorted(amounts)
    session.execute(
        _RELEASE,
        {
            "ids": [k[0] for k in keys],
            "periods": [k[1] for k in keys],
            "starts": [k[2] for k in keys],
            "amounts": [amounts[k] for k in keys],
        },
    )


def current(session: Session, account_id: uuid.UUID) -> tuple[int, int]:
    """The account's use today and this month (UTC, by the database's clock)."""
    rows = dict(session.execute(_CURRENT, {"account_id": account_id}).tuples().all())
    return rows.get(DAY, 0), rows.get(MONTH, 0)
