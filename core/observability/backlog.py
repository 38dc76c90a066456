"""How much work is waiting: the numbers behind the backlog gauges and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.audit_seal import unsealed
from core.models import Transfer, TransferStatus


@dataclass(frozen=True)
class Backlog:
    pending_transfers: int
    oldest_pending_age_seconds: float
    outbox_backlog: int
    unsealed_audit_rows: int
    oldest_unsealed_audit_age_seconds: float


def measure(session: Session, now: datetime) -> Backlog:
    count, oldest = session.execute(
        select(func.count(), func.min(Transfer.created_at)).where(
            Transfer.status.in_([TransferStatus.PENDING, TransferStatus.PROCESSING])
        )
    ).one()
    outbox = session.execute(text("SELECT count(*) FROM webhook_events WHERE relayed_at IS NULL")).scalar_one()
    age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    audit = unsealed(session, now)
    return Backlog(count, age, outbox, audit.rows, audit.oldest_age_seconds)
