"""How much work is waiting: the numbers behind the backlog gauges and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.audit.seal import unsealed
from core.models import Transfer, TransferStatus
from core.transfers.sweep import count_parked


@dataclass(frozen=True)
class Backlog:
    pending_transfers: int
    oldest_pending_age_seconds: float
    outbox_backlog: int
    unsealed_audit_rows: int
    oldest_unsealed_audit_age_seconds: float
    oldest_undelivered_webhook_age_seconds: float
    parked_transfers: int  # PENDING ones the sweeper stopped re-nudging (SWEEPER_MAX_REQUEUES)


def _age(now: datetime, oldest: datetime | None) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def measure(session: Session, now: datetime, max_requeues: int = 60) -> Backlog:
    count, oldest = session.execute(
        select(func.count(), func.min(Transfer.created_at)).where(Transfer.status == TransferStatus.PENDING)
    ).one()
    outbox, oldest_unrelayed = session.execute(
        text("SELECT count(*), min(occurred_at) FROM webhook_events WHERE relayed_at IS NULL")
    ).one()
    # A delivery is undelivered until it succeeds or is given up; its event's age is how late
    # the receiver is. Both scans use partial indexes on the (small) waiting sets. A delivery
    # carries its event's occurred_at (migration 0029, the partition key of webhook_events): no
    # event is read for it; one made before 0029 finds its event by id (every day partition).
    oldest_pending_delivery = session.execute(
        text(
            "SELECT min(coalesce(d.event_occurred_at,"
            " (SELECT e.occurred_at FROM webhook_events e WHERE e.id = d.event_id)))"
            " FROM webhook_deliveries d WHERE d.status = 'PENDING'"
        )
    ).scalar_one()
    undelivered = [t for t in (oldest_unrelayed, oldest_pending_delivery) if t is not None]
    audit = unsealed(session, now)
    return Backlog(
        pending_transfers=count,
        oldest_pending_age_seconds=_age(now, oldest),
        outbox_backlog=outbox,
        unsealed_audit_rows=audit.rows,
        oldest_unsealed_audit_age_seconds=audit.oldest_age_seconds,
        oldest_undelivered_webhook_age_seconds=_age(now, min(undelivered, default=None)),
        parked_transfers=count_parked(session, max_requeues),
    )
