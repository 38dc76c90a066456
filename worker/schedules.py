"""The beat task that runs scheduled transfers (core/schedules/materialiser.py)."""

from __future__ import annotations

import structlog
from celery import shared_task

from core.after_commit import publish_after_commit
from core.db import database_now
from core.schedules.materialiser import run_due
from worker.runtime import resources
from worker.settlement import enqueue_settlement

log = structlog.get_logger(__name__)


@shared_task(name="worker.tasks.run_schedules", acks_late=True)
def run_schedules() -> int:
    """One pass over due occurrences and settled runs; safe to run twice at once or again."""
    res = resources()
    with res.sessions.begin() as session:
        # The database's clock, the one that stamps transfers: alike on every worker host.
        tick = run_due(session, now=database_now(session), partitions=res.settings.settle_partitions)
        for partition in sorted(tick.partitions):
            publish_after_commit(session, enqueue_settlement, partition)
    if tick.transfers or tick.recorded:
        log.info("schedules_ran", transfers=tick.transfers, recorded=tick.recorded)
    return tick.transfers
