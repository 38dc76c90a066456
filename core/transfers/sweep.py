"""Finding work the queue may have lost: transfers accepted but still PENDING."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import SmallInteger, Uuid, column, func, or_, select, update, values
from sqlalchemy.orm import Session

from core.models import Transfer, TransferStatus
from core.transfers.routing import partition_of


class Stale(NamedTuple):
    transfer_id: uuid.UUID
    request_id: str | None
    partition: int


def claim_stale_pending(
    session: Session,
    *,
    older_than: timedelta,
    now: datetime,
    partitions: int = 1,
    limit: int = 500,
    max_requeues: int | None = None,
) -> list[Stale]:
    """PENDING transfers accepted before ``now - older_than`` and not re-published within that
    window, oldest first, with the request id that accepted them and their partition; marks them
    re-published now. A transfer routed under another partition count (K changed) is re-routed.

    SKIP LOCKED lets a running settlement (which holds the row) and a concurrent sweeper pass
    them by. A transfer already re-published ``max_requeues`` times is parked: left PENDING for
    whatever drains its partition, but no longer nudged, and counted by :func:`count_parked`
    (an alert) so that a transfer nothing can settle is looked at instead of retried forever."""
    cutoff = now - older_than
    due = (
        select(Transfer.id)
        .where(
            Transfer.status == TransferStatus.PENDING,
            Transfer.created_at < cutoff,
            or_(Transfer.requeued_at.is_(None), Transfer.requeued_at < cutoff),
            *([Transfer.requeue_count < max_requeues] if max_requeues is not None else []),
        )
        .order_by(Transfer.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    stmt = (
        update(Transfer)
        .where(Transfer.id.in_(due.scalar_subquery()))
        .values(requeued_at=now, requeue_count=Transfer.requeue_count + 1)
    )
    rows = session.execute(
        stmt.returning(Transfer.id, Transfer.request_id, Transfer.partition, Transfer.source_account_id)
    ).all()
    routed = [(r, partition_of(r.source_account_id, partitions)) for r in rows]
    moved = [(r.id, p) for r, p in routed if p != r.partition]
    if moved:
        route = values(column("id", Uuid), column("partition", SmallInteger), name="route").data(moved)
        session.execute(
            update(Transfer).where(Transfer.id == route.c.id).values(partition=route.c.partition),
            execution_options={"synchronize_session": False},
        )
    return [Stale(r.id, r.request_id, p) for r, p in routed]


def oldest_pending_age_seconds(session: Session, now: datetime) -> float:
    oldest = session.scalar(select(func.min(Transfer.created_at)).where(Transfer.status == TransferStatus.PENDING))
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def count_parked(session: Session, max_requeues: int) -> int:
    """PENDING transfers the sweeper gave up re-publishing (see :func:`claim_stale_pending`)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Transfer)
            .where(Transfer.status == TransferStatus.PENDING, Transfer.requeue_count >= max_requeues)
        )
        or 0
    )
