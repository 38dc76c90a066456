"""The events' retention: the outbox's days ahead are created, days past 30 days dropped whole
(core/events_partitions.py), and what is left in the default or legacy partition past its
retention leaves in batches (core/events_feed.py prune)."""

from __future__ import annotations

import structlog
from celery import shared_task

from core.db import database_now
from core.events_feed import PRUNE_BATCH, prune
from core.events_partitions import drop_partition, ensure_partitions, expired
from worker.runtime import resources

PRUNE_MAX_BATCHES = 50  # per run; the next beat tick continues

log = structlog.get_logger(__name__)


@shared_task(name="worker.tasks.prune_events", acks_late=True)
def prune_events() -> int:
    """Keep the day partitions ready, drop the expired ones (each in its own short transaction),
    then delete leftovers a batch per short transaction; the events removed by the batches."""
    sessions = resources().sessions
    with sessions.begin() as session:
        ensured = ensure_partitions(session, now=database_now(session))
    if ensured.created or ensured.skipped:
        log.info("events.partitions_created", created=ensured.created, skipped=ensured.skipped)
    with sessions.begin() as session:
        old = [p.name for p in expired(session, now=database_now(session))]
    for name in old:
        with sessions.begin() as session:
            outcome = drop_partition(session, name)
        if outcome is False:
            log.warning("events.partition_kept_unrelayed", partition=name)
        elif outcome is None:
            log.info("events.partition_busy", partition=name)
        else:
            log.info("events.partition_dropped", partition=name)
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
