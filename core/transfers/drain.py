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

from core.models import Transfer, TransferBatch, TransferStatus

# pg_try_advisory_xact_lock(class, partition): the class says "settlement partition".
PARTITION_LOCK_CLASS = 7_201_009
_T = Transfer.__table__
_B = TransferBatch.__table__


@dataclass(frozen=True)
class Batch:
    transfer_ids: list[uuid.UUID]
    account_ids: list[uuid.UUID]  # every account the batch touches, sorted
    atomic_batches: frozenset[uuid.UUID] = frozenset()  # the atomic batches among them (immutable)


def next_batch(session: Session, partition: int, limit: int) -> Batch:
    """The partition's oldest PENDING transfers (a read without locks: settle_batch locks).

    An atomic batch is never split: when the limit cuts one, the rest of it joins this batch
    (so the batch may exceed ``limit`` by up to an atomic batch's size), and its accounts are
    among those to lock."""
    columns = (_T.c.id, _T.c.source_account_id, _T.c.destination_account_id, _T.c.created_at, _T.c.batch_id)
    rows = session.execute(
        select(*columns)
        .where(_T.c.status == TransferStatus.PENDING, _T.c.partition == partition)
        .order_by(_T.c.created_at, _T.c.id)
        .limit(limit)
    ).all()
    batch_ids = {r.batch_id for r in rows if r.batch_id is not None}
    atomic: frozenset[uuid.UUID] = frozenset()
    if batch_ids:
        atomic = frozenset(session.scalars(select(_B.c.id).where(_B.c.id.in_(batch_ids), _B.c.atomic)))
    if atomic:
        taken = {r.id for r in rows}
        rest = session.execute(
            select(*columns).where(_T.c.status == TransferStatus.PENDING, _T.c.batch_id.in_(atomic))
        ).all()
        rows = sorted([*rows, *(r for r in rest if r.id not in taken)], key=lambda r: (r.created_at, r.id))
    accounts = {r.source_account_id for r in rows} | {r.destination_account_id for r in rows}
    return Batch([r.id for r in rows], sorted(accounts), atomic)


@dataclass(frozen=True)
class WaitLimits:
    """What one drainer's transaction may make others wait for, and wait for itself."""

    lock_timeout_ms: int  # a row lock held by another (maybe paused) drainer: give up, retry later
    idle_timeout_ms: int  # this transaction idle (its process paused): Postgres ends it, rows freed


def bound_waits(session: Session, limits: WaitLimits, holder: str) -> None:
    """Bound this transaction's waits (for it only), so one paused or dead drainer delays the
    others by seconds, and name it in ``pg_stat_activity.application_name`` (``holder``: the
    process), so an operator sees which process holds a partition's rows."""
    session.execute(
        select(
            func.set_config("lock_timeout", f"{limits.lock_timeout_ms}ms", True),
            func.set_config("idle_in_transaction_session_timeout", f"{limits.idle_timeout_ms}ms", True),
            func.set_config("application_name", holder[:63], True),
        )
    )


def claim_partition(session: Session, partition: int) -> bool:
    """True when this transaction is now the partition's only drainer (until it ends)."""
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(PARTITION_LOCK_CLASS, partition))))
