"""Settling a transfer: one Postgres transaction, rows locked in a fixed order, at most once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit, ledger
from core.db import ROW_LOCK
from core.models import Account, AccountStatus, Transfer, TransferStatus
from core.observability import tracing
from core.webhooks import outbox


@dataclass(frozen=True)
class Settled:
    transfer_id: uuid.UUID
    status: TransferStatus
    failure_code: str | None
    applied: bool  # False when another run already settled it (redelivery, sweeper)
    amount: int
    currency: str
    accepted_at: datetime


def settle_transfer(session: Session, transfer_id: uuid.UUID, request_id: str | None = None) -> Settled:
    """Apply a PENDING transfer or fail it with a code. Safe to call any number of times.

    Locks the transfer row first, then both accounts (``FOR NO KEY UPDATE``) in id order, so
    concurrent settlements of crossing pairs cannot deadlock, and a redelivered task
    sees the final status and does nothing. The caller owns (and commits) the transaction.
    """
    transfer = session.get(Transfer, transfer_id, with_for_update=ROW_LOCK)
    if transfer is None:
        raise LookupError(f"transfer {transfer_id} does not exist")
    if transfer.status not in (TransferStatus.PENDING, TransferStatus.PROCESSING):
        return _result(transfer, applied=False)

    accounts = {
        a.id: a
        for a in session.scalars(
            select(Account)
            .where(Account.id.in_([transfer.source_account_id, transfer.destination_account_id]))
            .order_by(Account.id)
            .with_for_update(key_share=True)  # ROW_LOCK, see core.db
        )
    }
    source = accounts[transfer.source_account_id]
    destination = accounts[transfer.destination_account_id]

    failure = None
    if source.status != AccountStatus.ACTIVE or destination.status != AccountStatus.ACTIVE:
        failure = "ACCOUNT_INACTIVE"
    elif source.balance < transfer.amount:
        failure = "INSUFFICIENT_FUNDS"
    else:
        ledger.post(session, transfer, debit=source, credit=destination)

    transfer.status = TransferStatus.FAILED if failure else TransferStatus.COMPLETED
    transfer.failure_code = failure
    transfer.completed_at = func.now()
    audit.record(
        session,
        action="transfer.failed" if failure else "transfer.completed",
        entity_type="transfer",
        entity_id=transfer.id,
        actor_id=None,
        request_id=request_id,
        details={"failure_code": failure} if failure else {"amount": transfer.amount},
    )
    session.flush()
    # transfer.completed/failed (+ account.debited/credited), committed with the settlement.
    with tracing.span("emit_events", transfer_id=transfer.id):
        outbox.transfer_changed(session, transfer, source, destination)
    return _result(transfer, applied=True)


def _result(transfer: Transfer, *, applied: bool) -> Settled:
    return Settled(
        transfer.id,
        transfer.status,
        transfer.failure_code,
        applied=applied,
        amount=transfer.amount,
        currency=transfer.currency,
        accepted_at=transfer.created_at,
    )
