"""Reconciliation: the ledger and the balances must tell the same story.

A full pass checks every account and transfer. An incremental one (``incremental=True``) checks
only what changed since the last clean pass (reconcile_checkpoints, written by
``record_checkpoint``): every money movement and every change to an account's money settings
writes an audit row in its own transaction, and ``audit_log.txid`` with its (txid, id) index
names those transactions. A pass records the xmin of its snapshot as its horizon: every
transaction below it had finished, so its rows were visible and checked; the next incremental
pass takes the transfers and accounts named by audit rows at or above that horizon (the
sealer's rule, core/audit/seal.py), their accounts, and checks only those. Per account, the
entries chain along ``seq`` (``balance_after - amount`` is the entry before's ``balance_after``)
and the newest one's ``balance_after`` is the balance, so an account is proven from its new
entries alone, not by summing its history.

What the incremental pass cannot see: a change that bypassed the application and wrote no audit
row (the full pass, which the tamper tests run, finds it), and outgoing use is re-derived for each
touched (account, day) and (account, month), so a busy account's month costs that month's
transfers, not its history.
"""

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
    # The transactions this pass covers: all below ``horizon`` (its snapshot's xmin); an
    # incremental pass started at ``started_after_horizon`` (None: a full pass).
    horizon: int = 0
    started_after_horizon: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


# Each query returns the rows that break one invariant; an empty result is a pass. {accounts}
# and {transfers} are the pass's scope, a predicate on the alias ``a`` or ``t``: TRUE in a full
# pass, membership of the scope tables in an incremental one.
_BALANCE_VS_LEDGER = """
SELECT a.id, a.balance, coalesce(sum(e.amount), 0) AS ledger
  FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
 GROUP BY a.id HAVING a.balance <> coalesce(sum(e.amount), 0)
"""
# Incremental instead of the sum above: each entry of a transfer in scope follows the entry
# before it on its account (one probe of (account_id, seq) each).
_ENTRY_CHAIN = """
SELECT e.id, e.account_id, e.seq, e.amount, e.balance_after, prev.balance_after AS before
  FROM ledger_entries e
  LEFT JOIN LATERAL (SELECT p.balance_after FROM ledger_entries p
                      WHERE p.account_id = e.account_id AND p.seq < e.seq
                      ORDER BY p.seq DESC LIMIT 1) prev ON true
 WHERE e.transfer_id IN (SELECT id FROM reconcile_scope_transfers)
   AND e.balance_after - e.amount <> coalesce(prev.balance_after, 0)
"""
_BALANCE_VS_NEWEST_ENTRY = """
SELECT a.id, a.balance, newest.balance_after
  FROM accounts a
  LEFT JOIN LATERAL (SELECT e.balance_after FROM ledger_entries e WHERE e.account_id = a.id
                      ORDER BY e.seq DESC LIMIT 1) newest ON true
 WHERE {accounts} AND a.balance <> coalesce(newest.balance_after, 0)
"""
_CURRENCY_NOT_ZERO = """
SELECT a.currency, sum(e.amount) AS total
  FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
 WHERE {entries}
 GROUP BY a.currency HAVING sum(e.amount) <> 0
"""
_TRANSFER_ENTRIES = """
SELECT t.id, t.status, coalesce(t.captured_amount, t.amount) AS amount, count(e.id) AS n,
       coalesce(sum(e.amount) FILTER (WHERE e.account_id = t.source_account_id), 0) AS debit,
       coalesce(sum(e.amount) FILTER (WHERE e.account_id = t.destination_account_id), 0) AS credit
  FROM transfers t LEFT JOIN ledger_entries e ON e.transfer_id = t.id
 WHERE {transfers}
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
  LEFT JOIN LATERAL (SELECT sum(t.amount) AS total FROM transfers t
                      WHERE t.source_account_id = a.id AND t.status = 'HELD') h ON true
 WHERE {accounts} AND a.held_amount <> coalesce(h.total, 0)
"""
_HOLD_STATES = """
SELECT t.id, t.status, t.hold, t.captured_amount FROM transfers t
 WHERE {transfers}
   AND ((NOT t.hold AND (t.status IN ('HELD', 'VOIDED', 'EXPIRED') OR t.captured_amount IS NOT NULL))
        OR (t.captured_amount IS NOT NULL AND t.status <> 'COMPLETED'))
"""
_ORPHAN_ENTRIES = """
SELECT e.id, e.transfer_id FROM ledger_entries e JOIN transfers t ON t.id = e.transfer_id
 WHERE {transfers} AND e.account_id NOT IN (t.source_account_id, t.destination_account_id)
"""

# Credit lines: no customer account's available balance (balance - held + credit_limit) is below
# zero, so no balance is beyond its line, unless an admin lowered the line below what was drawn
# and it is not back within yet (over_credit_line; the database's CHECK says the same).
_BEYOND_CREDIT_LINE = """
SELECT a.id, a.balance, a.held_amount, a.credit_limit FROM accounts a
 WHERE {accounts}
   AND a.kind = 'CUSTOMER' AND NOT a.over_credit_line AND a.balance - a.held_amount + a.credit_limit < 0
"""
# Outgoing use: each running total equals what its account's transfers of that period count
# (core/accounts/usage.py: TRANSFER debits COMPLETED, captured amount, holds while HELD).
_USED = "CASE WHEN t.status = 'HELD' THEN t.amount ELSE coalesce(t.captured_amount, t.amount) END"
_PERIODS = """(VALUES ('DAY', CAST(t.created_at AT TIME ZONE 'UTC' AS date)),
                      ('MONTH', CAST(date_trunc('month', t.created_at AT TIME ZONE 'UTC') AS date)))
           AS p(period, starts_on)"""
_USAGE_VS_TRANSFERS = f"""
WITH derived AS (
    SELECT t.source_account_id AS account_id, p.period, p.starts_on, sum({_USED}) AS used
      FROM transfers t CROSS JOIN LATERAL {_PERIODS}
     WHERE t.kind = 'TRANSFER' AND t.status IN ('COMPLETED', 'HELD')
     GROUP BY t.source_account_id, p.period, p.starts_on
)
SELECT coalesce(d.account_id, u.account_id) AS account_id, coalesce(d.period, u.period) AS period,
       coalesce(d.starts_on, u.starts_on) AS starts_on, coalesce(u.used, 0) AS recorded, coalesce(d.used, 0) AS derived
  FROM derived d FULL JOIN account_usage u
    ON u.account_id = d.account_id AND u.period = d.period AND u.starts_on = d.starts_on
 WHERE coalesce(u.used, 0) <> coalesce(d.used, 0)
"""  # noqa: S608 -- formats in only this module's SQL fragments
# Incremental: the same totals for the periods a transfer in scope counts in, each derived from
# its account's transfers of that period (a range of ix_transfers_source_status_created).
_USAGE_OF_TOUCHED_PERIODS = f"""
WITH touched AS MATERIALIZED (
    SELECT DISTINCT t.source_account_id AS account_id, p.period, p.starts_on
      FROM transfers t CROSS JOIN LATERAL {_PERIODS}
     WHERE t.id IN (SELECT id FROM reconcile_scope_transfers) AND t.kind = 'TRANSFER'
), derived AS (
    SELECT k.account_id, k.period, k.starts_on, coalesce(sum({_USED}), 0) AS used
      FROM touched k
      LEFT JOIN transfers t
        ON t.source_account_id = k.account_id AND t.status IN ('COMPLETED', 'HELD') AND t.kind = 'TRANSFER'
       AND t.created_at >= CAST(k.starts_on AS timestamp) AT TIME ZONE 'UTC'
       AND t.created_at < CAST(k.starts_on + CASE k.period WHEN 'DAY' THEN interval '1 day'
                                                   ELSE interval '1 month' END AS timestamp) AT TIME ZONE 'UTC'
     GROUP BY k.account_id, k.period, k.starts_on
)
SELECT d.account_id, d.period, d.starts_on, coalesce(u.used, 0) AS recorded, d.used AS derived
  FROM derived d LEFT JOIN account_usage u
    ON u.account_id = d.account_id AND u.period = d.period AND u.starts_on = d.starts_on
 WHERE coalesce(u.used, 0) <> d.used
"""  # noqa: S608 -- formats in only this module's SQL fragments

# The scope of an incremental pass: what audit rows of transactions at or above the horizon name.
_UUID = "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
_SCOPE = (
    "DROP TABLE IF EXISTS pg_temp.reconcile_scope_transfers",
    "DROP TABLE IF EXISTS pg_temp.reconcile_scope_accounts",
    f"""CREATE TEMP TABLE reconcile_scope_transfers ON COMMIT DROP AS
        SELECT DISTINCT CAST(l.entity_id AS uuid) AS id FROM audit_log l
         WHERE l.txid >= :horizon AND l.entity_type = 'transfer' AND l.entity_id ~ {_UUID}""",  # noqa: S608 -- a constant
    f"""CREATE TEMP TABLE reconcile_scope_accounts ON COMMIT DROP AS
        SELECT t.source_account_id AS id FROM transfers t JOIN reconcile_scope_transfers s ON s.id = t.id
        UNION SELECT t.destination_account_id FROM transfers t JOIN reconcile_scope_transfers s ON s.id = t.id
        UNION SELECT CAST(l.entity_id AS uuid) FROM audit_log l
               WHERE l.txid >= :horizon AND l.entity_type = 'account' AND l.entity_id ~ {_UUID}""",  # noqa: S608 -- a constant
    "ANALYZE reconcile_scope_transfers",
    "ANALYZE reconcile_scope_accounts",
)
_IN_SCOPE = {
    "accounts": "a.id IN (SELECT id FROM reconcile_scope_accounts)",
    "transfers": "t.id IN (SELECT id FROM reconcile_scope_transfers)",
    "entries": "e.transfer_id IN (SELECT id FROM reconcile_scope_transfers)",
}
_EVERYTHING = {"accounts": "TRUE", "transfers": "TRUE", "entries": "TRUE"}


# Payouts (core/payouts): each currency's in-transit account holds exactly the money of its payouts
# that has left the customer and not come back or gone on: SENT ones, and PENDING ones whose
# transfer COMPLETED (not yet in a file). SETTLED and RETURNED ones have left it (core/reconciliation).
_IN_TRANSIT_VS_PAYOUTS = """
SELECT a.currency, a.balance, coalesce(p.total, 0) AS payouts
  FROM accounts a
  LEFT JOIN LATERAL (SELECT sum(p.amount) AS total FROM payouts p JOIN transfers t ON t.id = p.transfer_id
                      WHERE p.currency = a.currency
                        AND (p.status = 'SENT' OR (p.status = 'PENDING' AND t.status = 'COMPLETED'))) p ON true
 WHERE a.kind = 'IN_TRANSIT' AND a.balance <> coalesce(p.total, 0)
"""


# How a row of each query reads in the report: a format string over the row's columns.
_ENTRY_CHAIN_PROBLEM = (
    "ledger entry {id} (account {account_id}, seq {seq}): balance_after {balance_after}"
    " less amount {amount} != the entry before's {before}"
)
# The checks scoped by {accounts}, {transfers} or {entries}, in the order a pass runs them.
_SCOPED_CHECKS = (
    (_BALANCE_VS_NEWEST_ENTRY, "account {id}: balance {balance} != its newest entry's balance_after {balance_after}"),
    (_CURRENCY_NOT_ZERO, "currency {currency}: ledger sums to {total}, not 0"),
    (_TRANSFER_ENTRIES, "transfer {id} ({status}, amount {amount}): {n} entries, debit {debit}, credit {credit}"),
    (_HELD_VS_HOLDS, "account {id}: held {held_amount} != sum of its HELD transfers {holds}"),
    (_HOLD_STATES, "transfer {id} ({status}, hold {hold}, captured {captured_amount}): not a valid hold state"),
    (_ORPHAN_ENTRIES, "ledger entry {id} is on an account outside transfer {transfer_id}"),
    (
        _BEYOND_CREDIT_LINE,
        "account {id}: balance {balance} less held {held_amount} is beyond its credit line {credit_limit}",
    ),
)
_USAGE_PROBLEM = "account {account_id}: {period} use from {starts_on} recorded {recorded}, its transfers make {derived}"
_IN_TRANSIT_PROBLEM = "currency {currency}: in-transit balance {balance} != its payouts in transit {payouts}"

# Called after each invariant's query: (queries done, queries in all).
Progress = Callable[[int, int], None]
_QUERIES = 1 + len(_SCOPED_CHECKS) + 2  # the ledger check, the scoped ones, usage and in-transit


def last_horizon(session: Session) -> int | None:
    """The horizon of the last clean pass (None: there is none), where an incremental one starts."""
    return session.execute(text("SELECT horizon FROM reconcile_checkpoints ORDER BY id DESC LIMIT 1")).scalar()


def record_checkpoint(session: Session, report: Report) -> bool:
    """Remember a clean pass's horizon for the next incremental one; False (nothing kept) if it found problems."""
    if not report.ok:
        return False
    session.execute(
        text(
            "INSERT INTO reconcile_checkpoints (horizon, full_pass, accounts_checked, transfers_checked)"
            " VALUES (:horizon, :full_pass, :accounts, :transfers)"
        ),
        {
            "horizon": report.horizon,
            "full_pass": report.started_after_horizon is None,
            "accounts": report.accounts_checked,
            "transfers": report.transfers_checked,
        },
    )
    return True


def _problems(session: Session, query: str, problem: str) -> list[str]:
    """``problem`` filled in from each row ``query`` finds (each row breaks an invariant)."""
    return [problem.format(**row._mapping) for row in session.execute(text(query))]


def reconcile(session: Session, progress: Progress | None = None, *, incremental: bool = False) -> Report:
    """Check every invariant of the books (``incremental``: of what changed since the last clean
    pass; a full pass when there is none). Run it in a REPEATABLE READ transaction so all queries
    see one snapshot while transfers keep settling."""
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, _QUERIES)

    # First, before any check reads: every later snapshot sees all transactions below it.
    horizon = session.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).scalar_one()
    start = last_horizon(session) if incremental else None
    report = Report(horizon=horizon, started_after_horizon=start)
    if start is not None and start > horizon:
        # xmin only grows: a checkpoint ahead of this snapshot was not written by a pass.
        report.problems.append(f"checkpoint horizon {start} is ahead of this snapshot ({horizon}); run a full pass")
        return report
    scope = _EVERYTHING if start is None else _IN_SCOPE
    if start is None:
        report.accounts_checked = session.execute(text("SELECT count(*) FROM accounts")).scalar_one()
        report.transfers_checked = session.execute(text("SELECT count(*) FROM transfers")).scalar_one()
        report.problems += _problems(
            session, _BALANCE_VS_LEDGER, "account {id}: balance {balance} != ledger sum {ledger}"
        )
    else:
        for statement in _SCOPE:
            session.execute(text(statement), {"horizon": start} if ":horizon" in statement else {})
        report.accounts_checked = session.execute(text("SELECT count(*) FROM reconcile_scope_accounts")).scalar_one()
        report.transfers_checked = session.execute(text("SELECT count(*) FROM reconcile_scope_transfers")).scalar_one()
        report.problems += _problems(session, _ENTRY_CHAIN, _ENTRY_CHAIN_PROBLEM)
    step()
    usage = _USAGE_VS_TRANSFERS if start is None else _USAGE_OF_TOUCHED_PERIODS
    checks = [(query.format(**scope), problem) for query, problem in _SCOPED_CHECKS]
    for query, problem in [*checks, (usage, _USAGE_PROBLEM), (_IN_TRANSIT_VS_PAYOUTS, _IN_TRANSIT_PROBLEM)]:
        report.problems += _problems(session, query, problem)
        step()
    return report
