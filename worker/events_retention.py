"""The events' retention: events older than 30 days leave the outbox (core/events_feed.py prune)."""

from __future__ import annotations

import structlog
from celery import shared_task

from core.db import database_now
from core.events_feed import PRUNE_BATCH, prune
from worker.runtime import resources

PRUNE_MAX_BATCHES = 50  # per run; the next beat tick continues

log = structlog.get_logger(__name__)


@shared_task(name="worker.tasks.prune_events", acks_late=True)
def prune_events() -> int:
    """Delete expired events a batch per short transaction, until less than a batch is left."""
    sessions = resources().sessions
    total = 0
    for _ in range(PRUNE_MAX_BATCHES):
        with sessions.begin() as session:
            deleted = prune(session, now=database_now(session), batch=PRUNE_BATCH)
        total += deleted
        if deleted < PRUNE_BATCH:
            break
    if total:
        log.info("events.pruned", events=total)
    return total
