"""Finding work the queue may have lost: transfers accepted but still PENDING."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Transfer, TransferStatus


def stale_pending_ids(session: Session, *, older_than: timedelta, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """PENDING transfers created before ``now - older_than``, oldest first."""
    stmt = (
        select(Transfer.id)
        .where(Transfer.status == TransferStatus.PENDING, Transfer.created_at < now - older_than)
        .order_by(Transfer.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def oldest_pending_age_seconds(session: Session, now: datetime) -> float:
    oldest = session.scalar(select(func.min(Transfer.created_at)).where(Transfer.status == TransferStatus.PENDING))
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
