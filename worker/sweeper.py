"""The sweeper: the backstop that nudges partitions whose transfers are still PENDING after a while."""

from __future__ import annotations

from datetime import timedelta

import structlog
from celery import shared_task

from core.after_commit import publish_after_commit
from core.db import database_now
from core.transfers.sweep import claim_stale_pending, oldest_pending_age_seconds
from worker.runtime import resources
from worker.settlement import enqueue_settlement

log = structlog.get_logger(__name__)


@shared_task(name="worker.tasks.sweep_pending", acks_late=True)
def sweep_pending() -> int:
    """Nudge the partitions of transfers accepted but still PENDING: covers a nudge lost after commit."""
    res = resources()
    settings = res.settings
    with res.sessions.begin() as session:
        now = database_now(session)  # the clock that stamped created_at, never this host's
        due = claim_stale_pending(
            session,
            older_than=timedelta(seconds=settings.sweeper_pending_age_seconds),
            now=now,
            partitions=settings.settle_partitions,
            max_requeues=settings.sweeper_max_requeues,
        )
        oldest = oldest_pending_age_seconds(session, now)
        for partition in sorted({stale.partition for stale in due}):
            publish_after_commit(session, enqueue_settlement, partition)
    if due:
        log.warning(
            "sweeper_requeued",
            count=len(due),
            oldest_pending_age_seconds=round(oldest, 1),
            request_ids=sorted({stale.request_id for stale in due if stale.request_id})[:20],
        )
    return len(due)
