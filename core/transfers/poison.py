"""Ending a transfer that settlement cannot apply: FAILED with ``INTERNAL_ERROR``, never PENDING forever.

A non-transient error (a constraint, a value out of range, a bug) fails its whole batch's
transaction, and would fail it again on every retry. The worker isolates the transfer that
causes it by settling smaller and smaller parts of the batch (:func:`halves`, in accept order),
and ends the one that still fails alone with :func:`fail_unsettleable`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, case, func, select, update
from sqlalchemy.orm import Session

from core import audit, events
from core.models import Account, Transfer, TransferStatus
from core.transfers import linked
from core.transfers.linked import LINKED_FAILED
from core.transfers.settle import SETTLEABLE, Settled

INTERNAL_ERROR = "INTERNAL_ERROR"
_T = cast(Table, Transfer.__table__)


def halves(transfer_ids: Sequence[uuid.UUID]) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Split a failing batch in two, each still in accept order, the earlier transfers first."""
    middle = len(transfer_ids) // 2
    return list(transfer_ids[:middle]), list(transfer_ids[middle:])


def fail_unsettleable(session: Session, transfer_id: uuid.UUID, error: str) -> list[Settled]:
    """Mark a still-settleable transfer FAILED with ``INTERNAL_ERROR``, audited and reported by
    webhook like any failure; the other settleable transfers of its atomic batch, if any, end
    ``LINKED_FAILED`` with it (an atomic batch never settles in part; settlement takes it whole,
    so isolation cannot tell which of its transfers is the culprit). ``error`` is the error's
    class name only: a database message can carry the values it refused. Returns nothing when
    the transfer is already final."""
    groups = linked.atomic_batches(session, [transfer_id])
    rows = session.execute(
        update(_T)
        .where(linked.with_siblings([transfer_id], groups), _T.c.status.in_(SETTLEABLE))
        .values(
            status=TransferStatus.FAILED,
            failure_code=case((_T.c.id == transfer_id, INTERNAL_ERROR), else_=LINKED_FAILED),
            completed_at=func.now(),
            updated_at=func.now(),
        )
        .returning(*_T.c)
    ).all()
    if not any(row.id == transfer_id for row in rows):
        return []
    accounts = {a for row in rows for a in (row.source_account_id, row.destination_account_id)}
    owners = {
        a.id: a.user_id for a in session.execute(select(Account.id, Account.user_id).where(Account.id.in_(accounts)))
    }
    audit.record_many(
        session,
        [
            audit.entry(
                action="transfer.failed",
                entity_type="transfer",
                entity_id=row.id,
                actor_id=None,
                request_id=row.request_id,
                details={"failure_code": row.failure_code, "error": error[:100]},
            )
            for row in rows
        ],
    )
    events.emit_many(
        session,
        [
            event
            for row in rows
            for event in events.transfer_events(
                row,
                source_owner=owners.get(row.source_account_id),
                destination_owner=owners.get(row.destination_account_id),
                balances_after=None,
            )
        ],
    )
    return [
        Settled(row.id, row.status, row.failure_code, True, row.amount, row.currency, row.created_at, row.request_id)
        for row in rows
    ]
