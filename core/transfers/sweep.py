"""Finding work the queue may have lost: transfers accepted but still PENDING."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core.models import Transfer, TransferStatus


def claim_stale_pending(
    session: Session, *, older_than: timedelta, now: datetime, limit: int = 500
) -> list[tuple[uuid.UUID, str | None]]:
    """PENDING transfers accepted before ``now - older_than`` and not re-published within that
    window, oldest first, with the request id that accepted them; marks them re-published now.

    SKIP LOCKED lets a running settlement (which holds the row) and a concurrent sweeper pass
    them by."""
    cutoff = now - older_than
    due = (
        select(Transfer.id)
        .where(
            Transfer.status == TransferStatus.PENDING,
            Transfer.created_at < cutoff,
            or_(Transfer.requeued_at.is_(None), Transfer.requeued_at < cutoff),
        )
        .order_by(Transfer.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    stmt = update(Transfer).where(Transfer.id.in_(due.scalar_subquery())).values(requeued_at=now)
    return [(row.id, row.request_id) for row in session.execute(stmt.returning(Transfer.id, Transfer.request_id))]


def oldest_pending_age_seconds(session: Session, now: datetime) -> float:
    oldest = session.scalar(select(func.min(Transfer.created_at)).where(Transfer.status == TransferStatus.PENDING))
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
