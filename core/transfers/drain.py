"""Draining a settlement partition: its PENDING transfers, oldest first, a batch at a time.

One drainer per partition at a time (a transaction-level advisory lock taken without waiting),
so one account's debits settle in accept order. A drainer that finds the partition taken
leaves: the holder looks for new work after every commit, and any transfer committed before
that look is found by it. Correctness never depends on this lock: row locks and the PENDING
condition in ``settle_batch`` make a second drainer harmless, only slower.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Transfer, TransferStatus

# pg_try_advisory_xact_lock(class, partition): the class says "settlement partition".
PARTITION_LOCK_CLASS = 7_201_009
_T = Transfer.__table__


@dataclass(frozen=True)
class Batch:
    transfer_ids: list[uuid.UUID]
    account_ids: list[uuid.UUID]  # every account the batch touches, sorted


def next_batch(session: Session, partition: int, limit: int) -> Batch:
    """The partition's oldest PENDING transfers (a read without locks: settle_batch locks)."""
    rows = session.execute(
        select(_T.c.id, _T.c.source_account_id, _T.c.destination_account_id)
        .where(_T.c.status == TransferStatus.PENDING, _T.c.partition == partition)
        .order_by(_T.c.created_at, _T.c.id)
        .limit(limit)
    ).all()
    accounts = {r.source_account_id for r in rows} | {r.destination_account_id for r in rows}
    return Batch([r.id for r in rows], sorted(accounts))


def claim_partition(session: Session, partition: int) -> bool:
    """True when this transaction is now the partition's only drainer (until it ends)."""
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(PARTITION_LOCK_CLASS, partition))))
