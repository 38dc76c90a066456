"""The sweeper: the backstop that nudges partitions whose transfers are still PENDING after a while."""

from __future__ import annotations

from datetime import timedelta

import structlog
from celery import shared_task
from sqlalchemy.orm import Session

from core.after_commit import publish_after_commit
from core.config import Settings
from core.db import database_now
from core.transfers.sweep import Stale, claim_stale_pending, oldest_pending_age_seconds
from worker.runtime import resources
from worker.settlement import enqueue_settlement

log = structlog.get_logger(__name__)


@shared_task(name="worker.tasks.sweep_pending", acks_late=True)
def sweep_pending() -> int:
    """Nudge the partitions of transfers accepted but still PENDING: covers a nudge lost after commit."""
    res = resources()
    with res.sessions.begin() as session:
        due, oldest = claim_due(session, res.settings)
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


def claim_due(session: Session, settings: Settings) -> tuple[list[Stale], float]:
    """One sweep's work in Postgres: the stale PENDING transfers it claims, and the age of the
    oldest PENDING one (bench/scale.py times this same call)."""
    now = database_now(session)  # the clock that stamped created_at, never this host's
    due = claim_stale_pending(
        session,
        older_than=timedelta(seconds=settings.sweeper_pending_age_seconds),
        now=now,
        partitions=settings.settle_partitions,
        max_requeues=settings.sweeper_max_requeues,
    )
    return due, oldest_pending_age_seconds(session, now)
