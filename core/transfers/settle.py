"""Settling transfers: a batch in one Postgres transaction, set-based, at most once per transfer."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, Uuid, column, func, insert, select, update, values
from sqlalchemy.orm import Session

from core import audit
from core.models import Account, AccountStatus, LedgerEntry, Transfer, TransferStatus
from core.webhooks import outbox

# Core tables, not ORM entities, on this hot path: no ORM compile or identity-map work per batch.
_T = Transfer.__table__
_A = Account.__table__

# PROCESSING is never persisted (settlement is one transaction) but would be safe to take.
SETTLEABLE = (TransferStatus.PENDING, TransferStatus.PROCESSING)


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
    owners: dict[uuid.UUID, uuid.UUID | None]
    outcomes: dict[uuid.UUID, str | None] = field(default_factory=dict)  # transfer -> failure code
    entries: list[dict[str, Any]] = field(default_factory=list)
    balance_after: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)  # transfer -> (src, dst)
    touched: set[uuid.UUID] = field(default_factory=set)


def settle_batch(session: Session, transfer_ids: Collection[uuid.UUID]) -> list[Settled]:
    """Settle those of ``transfer_ids`` still PENDING, in accept order, in the caller's transaction.

    Locks the transfers (accept order), then each account they touch once, in id order
    (``FOR NO KEY UPDATE``, see core.db), so batches with crossing pairs cannot deadlock and a
    redelivered batch finds its transfers final and applies nothing. Every transfer is decided
    exactly as if it ran alone after those accepted before it: balances carry over within the
    batch. Balances, ledger entries, statuses, audit rows and outbox events are each written
    with one statement. Returns the transfers this call settled, in accept order.
    """
    if not transfer_ids:
        return []
    pending = session.execute(
        select(_T.c.id, _T.c.source_account_id, _T.c.destination_account_id, _T.c.amount)
        .where(_T.c.id.in_(list(transfer_ids)), _T.c.status.in_(SETTLEABLE))
        .order_by(_T.c.created_at, _T.c.id)
        .with_for_update(key_share=True)  # ROW_LOCK, see core.db
    ).all()
    if not pending:
        return []
    plan = _decide(session, pending)
    _write_balances(session, plan)
    if plan.entries:
        session.execute(insert(LedgerEntry.__table__), plan.entries)
    finals = _write_statuses(session, plan)
    audit.record_many(
        session,
        [
            audit.entry(
                action="transfer.failed" if t.failure_code else "transfer.completed",
                entity_type="transfer",
                entity_id=t.id,
                actor_id=None,
                request_id=t.request_id,
                details={"failure_code": t.failure_code} if t.failure_code else {"amount": t.amount},
            )
            for t in finals
        ],
    )
    # transfer.completed/failed (+ account.debited/credited), committed with the settlement.
    outbox.emit_many(
        session,
        [
            event
            for t in finals
            for event in outbox.transfer_events(
                t,
                source_owner=plan.owners[t.source_account_id],
                destination_owner=plan.owners[t.destination_account_id],
                balances_after=plan.balance_after.get(t.id),
            )
        ],
    )
    return [
        Settled(t.id, t.status, t.failure_code, True, t.amount, t.currency, t.created_at, t.request_id) for t in finals
    ]


def settle_transfer(session: Session, transfer_id: uuid.UUID) -> Settled:
    """Settle one transfer (a batch of one). Safe to call any number of times."""
    settled = settle_batch(session, [transfer_id])
    if settled:
        return settled[0]
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise LookupError(f"transfer {transfer_id} does not exist")
    return Settled(
        transfer.id,
        transfer.status,
        transfer.failure_code,
        False,
        transfer.amount,
        transfer.currency,
        transfer.created_at,
        transfer.request_id,
    )


def _decide(session: Session, pending: list[Any]) -> _Plan:
    account_ids = sorted({t.source_account_id for t in pending} | {t.destination_account_id for t in pending})
    accounts = session.execute(
        select(_A.c.id, _A.c.user_id, _A.c.balance, _A.c.status)
        .where(_A.c.id.in_(account_ids))
        .order_by(_A.c.id)
        .with_for_update(key_share=True)
    ).all()
    plan = _Plan(balances={a.id: a.balance for a in accounts}, owners={a.id: a.user_id for a in accounts})
    active = {a.id for a in accounts if a.status == AccountStatus.ACTIVE}
    for t in pending:
        src, dst = t.source_account_id, t.destination_account_id
        if src not in active or dst not in active:
            plan.outcomes[t.id] = "ACCOUNT_INACTIVE"
        elif plan.balances[src] < t.amount:
            plan.outcomes[t.id] = "INSUFFICIENT_FUNDS"
        else:
            plan.outcomes[t.id] = None
            plan.balances[src] -= t.amount
            plan.balances[dst] += t.amount
            plan.touched.update((src, dst))
            after = (plan.balances[src], plan.balances[dst])
            plan.balance_after[t.id] = after
            plan.entries += [
                {"transfer_id": t.id, "account_id": src, "amount": -t.amount, "balance_after": after[0]},
                {"transfer_id": t.id, "account_id": dst, "amount": t.amount, "balance_after": after[1]},
            ]
    return plan


def _write_balances(session: Session, plan: _Plan) -> None:
    if not plan.touched:
        return
    new = values(column("id", Uuid), column("balance", BigInteger), name="new_balance").data(
        [(account_id, plan.balances[account_id]) for account_id in sorted(plan.touched)]
    )
    session.execute(update(_A).where(_A.c.id == new.c.id).values(balance=new.c.balance, updated_at=func.now()))


def _write_statuses(session: Session, plan: _Plan) -> list[Any]:
    """Final status of every transfer in the batch; returns the updated rows in accept order."""
    order = {transfer_id: i for i, transfer_id in enumerate(plan.outcomes)}
    final = values(column("id", Uuid), column("status", String), column("failure_code", String), name="final").data(
        [
            (transfer_id, TransferStatus.FAILED.value if code else TransferStatus.COMPLETED.value, code)
            for transfer_id, code in plan.outcomes.items()
        ]
    )
    rows = session.execute(
        update(_T)
        .where(_T.c.id == final.c.id)
        .values(
            status=final.c.status, failure_code=final.c.failure_code, completed_at=func.now(), updated_at=func.now()
        )
        .returning(*_T.c)
    ).all()
    return sorted(rows, key=lambda r: order[r.id])
