"""Hold expiry: holds past their expiry end EXPIRED (core/transfers/holds.py), on a beat tick."""

from __future__ import annotations

import structlog
from celery import shared_task

from core.transfers.holds import expire_due
from worker.runtime import resources
from worker.transient import TRANSIENT

log = structlog.get_logger(__name__)

EXPIRE_BATCH = 500
EXPIRE_MAX_BATCHES = 20  # per run; the next beat tick continues


# retry_backoff=1: Celery's jitter draws a whole number of seconds (0.5 raised in randrange), and
# RabbitMQ's delayed delivery refuses a countdown under 1 s.
@shared_task(name="worker.tasks.expire_holds", acks_late=True, autoretry_for=TRANSIENT, retry_backoff=1, max_retries=3)
def expire_holds() -> int:
    """End the holds past their expiry as EXPIRED, a batch per transaction, until none is due."""
    sessions = resources().sessions
    total = 0
    for _ in range(EXPIRE_MAX_BATCHES):
        with sessions.begin() as session:
            expired = expire_due(session, limit=EXPIRE_BATCH)  # due by the database's clock
        total += len(expired)
        if len(expired) < EXPIRE_BATCH:
            break
    if total:
        log.info("holds_expired", count=total)
    return total
