"""Settling transfers: a batch in one Postgres transaction, set-based, at most once per transfer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, literal_column, select, text
from sqlalchemy.orm import Session

from core.accounts import limits, monitors, row_locks, usage
from core.events import STATUS_EVENTS, EventType, account_event_data_sql, owners_sql, transfer_data_sql
from core.models import Account, BalanceMonitor, Transfer, TransferStatus
from core.transfers import accept_rules, linked

# Core tables, not ORM entities, on this hot path: no ORM compile or identity-map work per batch.
_T = Transfer.__table__
_A = Account.__table__
_M = BalanceMonitor.__table__

# One statement each for a whole batch, with array parameters: prepared once, whatever the size.
# The balances and held totals, with the batch's outgoing use (usage.WRITE_SQL) as a CTE: both
# decided under the accounts' row locks, written in one round trip.
_UPDATE_BALANCES = text(
    f"WITH use_written AS ({usage.WRITE_SQL})"  # noqa: S608 -- formats in only core.accounts.usage's SQL
    " UPDATE accounts SET balance = new.balance, held_amount = new.held, updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), CAST(:held AS bigint[])) AS new(id, balance, held)"
    " WHERE accounts.id = new.id"
)
# What a batch's outcomes write, in one statement: each transfer's final status (a HELD transfer
# is not final yet: its completed_at comes with its capture, void or expiry), the ledger entries
# of those that moved money, one audit row each and their outbox events (the status event to both
# owners, events.owners_sql; account.debited and account.credited with
# the balance right after the transfer), all built by Postgres from the updated rows, in accept
# order (``ord``), so the audit ids and event sequence numbers follow it. The payloads equal
# events.transfer_events' (a test holds them together); rows that concern no user are not written.
_FINISH = text(
    f"""
WITH final AS (
    UPDATE transfers SET status = f.status, failure_code = f.code, failure_detail = CAST(f.detail AS jsonb),
        completed_at = CASE WHEN f.status = '{TransferStatus.HELD}' THEN NULL ELSE now() END, updated_at = now()
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:statuses AS varchar[]), CAST(:codes AS varchar[]), CAST(:details AS text[]),
        CAST(:actions AS varchar[]), CAST(:event_types AS varchar[]),
        CAST(:source_after AS bigint[]), CAST(:destination_after AS bigint[]),
        CAST(:source_owners AS uuid[]), CAST(:destination_owners AS uuid[])
    ) WITH ORDINALITY AS f(id, status, code, detail, action, event_type, source_after, destination_after,
                           source_owner, destination_owner, ord)
    WHERE transfers.id = f.id
    RETURNING {", ".join(f"transfers.{c.name}" for c in _T.c)}, f.ord, f.action, f.event_type,
              f.source_after, f.destination_after, f.source_owner, f.destination_owner
), entries AS (
    INSERT INTO ledger_entries (id, transfer_id, account_id, amount, balance_after)
    SELECT gen_random_uuid(), e.transfer_id, e.account_id, e.amount, e.balance_after
    FROM (
        SELECT ord, 1 AS side, id AS transfer_id, source_account_id AS account_id, -amount AS amount,
               source_after AS balance_after FROM final WHERE source_after IS NOT NULL
        UNION ALL
        SELECT ord, 2, id, destination_account_id, amount, destination_after FROM final
        WHERE destination_after IS NOT NULL
    ) e ORDER BY e.ord, e.side
), audited AS (
    INSERT INTO audit_log (actor_id, action, entity_type, entity_id, request_id, details)
    SELECT NULL, action, 'transfer', CAST(id AS text), request_id,
           CASE WHEN failure_code IS NOT NULL THEN jsonb_build_object('failure_code', failure_code)
                ELSE jsonb_build_object('amount', amount) END
    FROM final ORDER BY ord
), payloads AS (
    SELECT final.*, {transfer_data_sql("final")} AS data FROM final
), evented AS (
    INSERT INTO webhook_events (id, event_type, data, owner_ids)
    SELECT gen_random_uuid(), e.event_type, e.data, e.owners
    FROM (
        SELECT ord, 1 AS n, event_type, data, {owners_sql("source_owner", "destination_owner")} AS owners
        FROM payloads
        UNION ALL
        SELECT ord, 2, '{EventType.ACCOUNT_DEBITED}',
               {account_event_data_sql("data", "source_account_id", "source_after")},
               ARRAY[source_owner]
        FROM payloads WHERE source_after IS NOT NULL AND source_owner IS NOT NULL
        UNION ALL
        SELECT ord, 3, '{EventType.ACCOUNT_CREDITED}',
               {account_event_data_sql("data", "destination_account_id", "destination_after")},
               ARRAY[destination_owner]
        FROM payloads WHERE destination_after IS NOT NULL AND destination_owner IS NOT NULL
    ) e
    WHERE cardinality(e.owners) > 0
    ORDER BY e.ord, e.n
)
SELECT id, status, failure_code, amount, currency, created_at, request_id FROM final ORDER BY ord
"""  # noqa: S608 -- formats in only enum constants and SQL fragments of core (events.transfer_data_sql); values are bind parameters
).columns(_T.c.id, _T.c.status, _T.c.failure_code, _T.c.amount, _T.c.currency, _T.c.created_at, _T.c.request_id)

_AUDIT_ACTIONS = {
    TransferStatus.COMPLETED: "transfer.completed",
    TransferStatus.FAILED: "transfer.failed",
    TransferStatus.HELD: "transfer.held",
}

# Settlement is one transaction: a transfer is PENDING until it is final, with no status in between.
SETTLEABLE = (TransferStatus.PENDING,)


@dataclass(frozen=True)
class Settled:
    transfer_id: uuid.UUID
    status: TransferStatus
    failure_code: str | None
    applied: bool  # False when another run already settled it (redelivery, sweeper)
    amount: int
    currency: str
    accepted_at: datetime
    request_id: str | None = None


@dataclass
class _Plan:
    """What a batch writes, decided in accept order against running balances."""

    balances: dict[uuid.UUID, int]
    held: dict[uuid.UUID, int]  # accounts.held_amount, running like the balances
    owners: dict[uuid.UUID, uuid.UUID | None]
    credit: dict[uuid.UUID, int]  # accounts.credit_limit
    limits: dict[uuid.UUID, limits.Limits]  # in force
    used: dict[usage.Key, int]  # outgoing use per account and period, running like the balances
    monitored: set[uuid.UUID]  # accounts with a balance monitor: their changes are recorded
    outcomes: dict[uuid.UUID, str | None] = field(default_factory=dict)  # transfer -> failure code
    holds: set[uuid.UUID] = field(default_factory=set)  # transfers that end HELD, not COMPLETED
    balance_after: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)  # transfer -> (src, dst)
    touched: set[uuid.UUID] = field(default_factory=set)
    used_touched: set[usage.Key] = field(default_factory=set)
    changes: list[monitors.BalanceChange] = field(default_factory=list)  # of monitored accounts, in order


def settle_batch(
    session: Session, transfer_ids: Collection[uuid.UUID], *, atomic_batches: Collection[uuid.UUID] | None = None
) -> list[Settled]:
    """Settle those of ``transfer_ids`` still PENDING, in accept order, in the caller's transaction.

    Locks the transfers (accept order), then each account they touch once, in id order
    (``FOR NO KEY UPDATE``, see core.db), so batches with crossing pairs cannot deadlock and a
    redelivered batch finds its transfers final and applies nothing. Every transfer is decided
    exactly as if it ran alone after those accepted before it: balances carry over within the
    batch. Balances, ledger entries, statuses, audit rows and outbox events are each written
    with one statement. The transfers of an atomic batch among them are settled whole, all
    together or all failed, with their siblings (core.transfers.linked). Returns the transfers
    this call settled, in accept order.

    ``atomic_batches``: the atomic batches of ``transfer_ids`` when the caller has just read
    them (a drainer does: a transfer's batch never changes); None looks them up.
    """
    if not transfer_ids:
        return []
    # Atomic batches are settled whole, whichever of their ids were passed.
    groups = linked.atomic_batches(session, transfer_ids) if atomic_batches is None else set(atomic_batches)
    pending = session.execute(
        select(
            _T.c.id,
            _T.c.source_account_id,
            _T.c.destination_account_id,
            _T.c.amount,
            _T.c.batch_id,
            _T.c.hold,
            _T.c.kind,
            _T.c.created_at,
        )
        .where(linked.with_siblings(transfer_ids, groups), _T.c.status.in_(SETTLEABLE))
        .order_by(_T.c.created_at, _T.c.id)
        .with_for_update(key_share=True)  # ROW_LOCK, see core.db
    ).all()
    if not pending:
        return []
    details: dict[uuid.UUID, dict[str, Any]] = {}  # failure_detail; outside the plan, which atomic groups roll back
    plan = _decide(session, pending, groups, details)
    _write_balances(session, plan)  # and the use
    monitors.balances_changed(session, plan.changes)
    # Statuses, ledger entries, audit rows and transfer.completed/failed/held (+ account.debited/credited)
    # outbox events: one statement, committed with the balances.
    finals = _write_outcomes(session, plan, pending, details)
    return [
        Settled(t.id, t.status, t.failure_code, True, t.amount, t.currency, t.created_at, t.request_id) for t in finals
    ]


def _decide(
    session: Session, pending: Sequence[Any], groups: Collection[uuid.UUID], details: dict[uuid.UUID, dict[str, Any]]
) -> _Plan:
    account_ids = {t.source_account_id for t in pending} | {t.destination_account_id for t in pending}
    keys = [k for t in pending if usage.counts(t.kind) for k in usage.periods(t.source_account_id, t.created_at)]
    # The accounts, locked in id order, with their limits in force.
    accounts = session.execute(
        row_locks.locking(
            _A.c.id,
            _A.c.user_id,
            _A.c.balance,
            _A.c.held_amount,
            _A.c.status,
            _A.c.credit_limit,
            *(literal_column(limits.in_force_sql("accounts", n)).label(n) for n in limits.LIMIT_NAMES),
            exists().where(_M.c.account_id == _A.c.id).label("monitored"),
            ids=account_ids,
        )
    ).all()
    # Then the use of the periods this batch's debits fall in, read once the rows are locked: a
    # statement that waited for a lock sees the locked rows as committed, but any other table
    # as it was when the statement began, before the use that commit wrote.
    used = usage.read(session, keys)
    plan = _Plan(
        balances={a.id: a.balance for a in accounts},
        held={a.id: a.held_amount for a in accounts},
        owners={a.id: a.user_id for a in accounts},
        credit={a.id: a.credit_limit for a in accounts},
        limits={a.id: limits.Limits(*(getattr(a, n) for n in limits.LIMIT_NAMES)) for a in accounts},
        used=used,
        monitored={a.id for a in accounts if a.monitored},
    )
    active = {a.id for a in accounts if accept_rules.hold(accept_rules.ACTIVE, a, {})}  # else ACCOUNT_INACTIVE
    for unit in linked.units(pending, groups):
        if len(unit) == 1 and unit[0].batch_id not in groups:
            _apply(plan, unit[0], active, details)
        else:  # an atomic batch: all or nothing
            linked.apply_all_or_none(plan, unit, lambda t: _apply(plan, t, active, details))
    return plan


def _apply(plan: _Plan, t: Any, active: set[uuid.UUID], details: dict[uuid.UUID, dict[str, Any]]) -> str | None:
    """Decide one transfer against the plan's running balances and use (core.accounts.limits
    gives the order of the checks); returns its failure code."""
    src, dst = t.source_account_id, t.destination_account_id
    counted = usage.counts(t.kind)
    day, month = usage.periods(src, t.created_at)
    breach = None
    if src not in active or dst not in active:
        plan.outcomes[t.id] = "ACCOUNT_INACTIVE"
    elif counted and (breach := limits.outgoing_breach(plan.limits[src], plan.used[day], plan.used[month], t.amount)):
        plan.outcomes[t.id] = "LIMIT_EXCEEDED"
    elif breach := limits.credit_breach(plan.balances[src], plan.held[src], plan.credit[src], t.amount):
        plan.outcomes[t.id] = "INSUFFICIENT_FUNDS"
    else:
        plan.outcomes[t.id] = None
        _move(plan, t, (day, month) if counted else ())
    if breach is not None and limits.has_line(breach):
        details[t.id] = breach.as_detail()
    return plan.outcomes[t.id]


def _move(plan: _Plan, t: Any, periods: tuple[usage.Key, ...]) -> None:
    """Apply a transfer that passed: its use in ``periods``, then its hold or its money, and
    record the changes of monitored accounts (for core.accounts.monitors)."""
    src, dst = t.source_account_id, t.destination_account_id
    before = {a: (plan.balances[a], available(plan, a)) for a in (src, dst) if a in plan.monitored}
    for key in periods:
        plan.used[key] += t.amount
        plan.used_touched.add(key)
    if t.hold:
        _reserve(plan, t)
    else:
        plan.balances[src] -= t.amount
        plan.balances[dst] += t.amount
        plan.touched.update((src, dst))
        plan.balance_after[t.id] = (plan.balances[src], plan.balances[dst])
    for a, (balance, available_before) in before.items():
        if (balance, available_before) != (plan.balances[a], available(plan, a)):  # a hold leaves its destination
            plan.changes.append(
                monitors.BalanceChange(a, t.id, balance, plan.balances[a], available_before, available(plan, a))
            )


def available(plan: _Plan, account_id: uuid.UUID) -> int:
    """What a transfer may spend from the account now (core.accounts.limits.available)."""
    return limits.available(plan.balances[account_id], plan.held[account_id], plan.credit[account_id])


def _reserve(plan: _Plan, t: Any) -> None:
    """A hold moves nothing: the amount joins the source's held total (no ledger entries)."""
    plan.held[t.source_account_id] += t.amount
    plan.holds.add(t.id)
    plan.touched.add(t.source_account_id)


def _write_balances(session: Session, plan: _Plan) -> None:
    used = {k: plan.used[k] for k in plan.used_touched}
    if not plan.touched:  # nothing passed, so no use either (a transfer that passes touches its source)
        usage.write(session, used)
        return
    ids = sorted(plan.touched)
    session.execute(
        _UPDATE_BALANCES,
        {
            "ids": ids,
            "balances": [plan.balances[i] for i in ids],
            "held": [plan.held[i] for i in ids],
            **usage.write_params(used),
        },
    )


def _final_status(plan: _Plan, transfer_id: uuid.UUID, failure_code: str | None) -> TransferStatus:
    if failure_code:
        return TransferStatus.FAILED
    return TransferStatus.HELD if transfer_id in plan.holds else TransferStatus.COMPLETED


def _write_outcomes(
    session: Session, plan: _Plan, pending: Sequence[Any], details: dict[uuid.UUID, dict[str, Any]]
) -> Sequence[Any]:
    """Every transfer of the batch final (or HELD), with its entries, audit row and events;
    returns the updated rows in accept order."""
    ids = list(plan.outcomes)
    statuses = [_final_status(plan, t, c) for t, c in plan.outcomes.items()]
    after = [plan.balance_after.get(t) for t in ids]
    rows = {t.id: t for t in pending}
    source_owners = [plan.owners[rows[t].source_account_id] for t in ids]
    destination_owners = [plan.owners[rows[t].destination_account_id] for t in ids]
    return session.execute(
        _FINISH,
        {
            "ids": ids,
            "statuses": [s.value for s in statuses],
            "codes": list(plan.outcomes.values()),
            "details": [json.dumps(details[t]) if t in details and plan.outcomes[t] else None for t in ids],
            "actions": [_AUDIT_ACTIONS[s] for s in statuses],
            "event_types": [STATUS_EVENTS[s].value for s in statuses],
            "source_after": [a[0] if a else None for a in after],
            "destination_after": [a[1] if a else None for a in after],
            "source_owners": source_owners,
            "destination_owners": destination_owners,
        },
    ).all()
