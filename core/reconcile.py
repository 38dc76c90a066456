"""Reconciliation: the ledger and the balances must tell the same story."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass
class Report:
    accounts_checked: int = 0
    transfers_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# Each query returns the rows that break one invariant; an empty result is a pass.
_BALANCE_VS_LEDGER = """
SELECT a.id, a.balance, coalesce(sum(e.amount), 0) AS ledger
  FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
 GROUP BY a.id HAVING a.balance <> coalesce(sum(e.amount), 0)
"""
_CURRENCY_NOT_ZERO = """
SELECT a.currency, sum(e.amount) AS total
  FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
 GROUP BY a.currency HAVING sum(e.amount) <> 0
"""
_TRANSFER_ENTRIES = """
SELECT t.id, t.status, coalesce(t.captured_amount, t.amount) AS amount, count(e.id) AS n,
       coalesce(sum(e.amount) FILTER (WHERE e.account_id = t.source_account_id), 0) AS debit,
       coalesce(sum(e.amount) FILTER (WHERE e.account_id = t.destination_account_id), 0) AS credit
  FROM transfers t LEFT JOIN ledger_entries e ON e.transfer_id = t.id
 GROUP BY t.id
HAVING NOT (
        (t.status = 'COMPLETED' AND count(e.id) = 2
            AND coalesce(sum(e.amount) FILTER (WHERE e.account_id = t.source_account_id), 0)
                = -coalesce(t.captured_amount, t.amount)
            AND coalesce(sum(e.amount) FILTER (WHERE e.account_id = t.destination_account_id), 0)
                = coalesce(t.captured_amount, t.amount))
     OR (t.status <> 'COMPLETED' AND count(e.id) = 0))
"""
# Holds: each account's held total is exactly the sum of its open (HELD) holds, and only a
# hold ever reaches HELD, VOIDED or EXPIRED or has a captured amount.
_HELD_VS_HOLDS = """
SELECT a.id, a.held_amount, coalesce(h.total, 0) AS holds
  FROM accounts a
  LEFT JOIN (SELECT source_account_id, sum(amount) AS total FROM transfers WHERE status = 'HELD'
              GROUP BY source_account_id) h ON h.source_account_id = a.id
 WHERE a.held_amount <> coalesce(h.total, 0)
"""
_HOLD_STATES = """
SELECT t.id, t.status, t.hold, t.captured_amount FROM transfers t
 WHERE (NOT t.hold AND (t.status IN ('HELD', 'VOIDED', 'EXPIRED') OR t.captured_amount IS NOT NULL))
    OR (t.captured_amount IS NOT NULL AND t.status <> 'COMPLETED')
"""
_ORPHAN_ENTRIES = """
SELECT e.id, e.transfer_id FROM ledger_entries e JOIN transfers t ON t.id = e.transfer_id
 WHERE e.account_id NOT IN (t.source_account_id, t.destination_account_id)
"""

# Credit lines: no customer account's available balance (balance - held + credit_limit) is below
# zero, so no balance is beyond its line, unless an admin lowered the line below what was drawn
# and it is not back within yet (over_credit_line; the database's CHECK says the same).
_BEYOND_CREDIT_LINE = """
SELECT a.id, a.balance, a.held_amount, a.credit_limit FROM accounts a
 WHERE a.kind = 'CUSTOMER' AND NOT a.over_credit_line AND a.balance - a.held_amount + a.credit_limit < 0
"""
# Outgoing use: each running total equals what its account's transfers of that period count
# (core/accounts/usage.py: TRANSFER debits COMPLETED, captured amount, holds while HELD).
_USAGE_VS_TRANSFERS = """
WITH derived AS (
    SELECT t.source_account_id AS account_id, p.period, p.starts_on,
           sum(CASE WHEN t.status = 'HELD' THEN t.amount ELSE coalesce(t.captured_amount, t.amount) END) AS used
      FROM transfers t
     CROSS JOIN LATERAL (VALUES ('DAY', CAST(t.created_at AT TIME ZONE 'UTC' AS date)),
                                ('MONTH', CAST(date_trunc('month', t.created_at AT TIME ZONE 'UTC') AS date)))
           AS p(period, starts_on)
     WHERE t.kind = 'TRANSFER' AND t.status IN ('COMPLETED', 'HELD')
     GROUP BY t.source_account_id, p.period, p.starts_on
)
SELECT coalesce(d.account_id, u.account_id) AS account_id, coalesce(d.period, u.period) AS period,
       coalesce(d.starts_on, u.starts_on) AS starts_on, coalesce(u.used, 0) AS recorded, coalesce(d.used, 0) AS derived
  FROM derived d FULL JOIN account_usage u
    ON u.account_id = d.account_id AND u.period = d.period AND u.starts_on = d.starts_on
 WHERE coalesce(u.used, 0) <> coalesce(d.used, 0)
"""


# Called after each invariant's query: (queries done, queries in all).
Progress = Callable[[int, int], None]
_QUERIES = 8


def reconcile(session: Session, progress: Progress | None = None) -> Report:
    """Check every invariant of the books. Run it in a REPEATABLE READ transaction so all
    queries see one snapshot while transfers keep settling."""
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, _QUERIES)

    report = Report(
        accounts_checked=session.execute(text("SELECT count(*) FROM accounts")).scalar_one(),
        transfers_checked=session.execute(text("SELECT count(*) FROM transfers")).scalar_one(),
    )
    for row in session.execute(text(_BALANCE_VS_LEDGER)):
        report.problems.append(f"account {row.id}: balance {row.balance} != ledger sum {row.ledger}")
    step()
    for row in session.execute(text(_CURRENCY_NOT_ZERO)):
        report.problems.append(f"currency {row.currency}: ledger sums to {row.total}, not 0")
    step()
    for row in session.execute(text(_TRANSFER_ENTRIES)):
        report.problems.append(
            f"transfer {row.id} ({row.status}, amount {row.amount}): {row.n} entries, "
            f"debit {row.debit}, credit {row.credit}"
        )
    step()
    for row in session.execute(text(_HELD_VS_HOLDS)):
        report.problems.append(f"account {row.id}: held {row.held_amount} != sum of its HELD transfers {row.holds}")
    step()
    for row in session.execute(text(_HOLD_STATES)):
        report.problems.append(
            f"transfer {row.id} ({row.status}, hold {row.hold}, captured {row.captured_amount}): not a valid hold state"
        )
    step()
    for row in session.execute(text(_ORPHAN_ENTRIES)):
        report.problems.append(f"ledger entry {row.id} is on an account outside transfer {row.transfer_id}")
    step()
    for row in session.execute(text(_BEYOND_CREDIT_LINE)):
        report.problems.append(
            f"account {row.id}: balance {row.balance} less held {row.held_amount} is beyond its credit line"
            f" {row.credit_limit}"
        )
    step()
    for row in session.execute(text(_USAGE_VS_TRANSFERS)):
        report.problems.append(
            f"account {row.account_id}: {row.period} use from {row.starts_on} recorded {row.recorded},"
            f" its transfers make {row.derived}"
        )
    step()
    return report
