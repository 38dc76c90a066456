"""The audit sealer: chains the committed audit rows, off the writers' path (core/audit/seal.py)."""

from __future__ import annotations

import structlog
from celery import shared_task

from core.audit.seal import SEAL_BATCH, seal
from worker.runtime import resources

SEAL_MAX_BATCHES = 20  # per run; the next beat tick continues

log = structlog.get_logger(__name__)


@shared_task(name="worker.tasks.seal_audit", acks_late=True)
def seal_audit() -> int:
    """Chain the committed audit rows, a batch per transaction, until less than a batch is left."""
    sessions = resources().sessions
    total = 0
    for _ in range(SEAL_MAX_BATCHES):
        with sessions.begin() as session:
            result = seal(session, limit=SEAL_BATCH)
        if result.batch_id is not None:
            # Each root in the logs too: one more place, outside the database, that keeps a copy.
            log.info("audit.batch_sealed", n=result.batch_id, root=result.root, rows=result.sealed)
        total += result.sealed
        if result.busy or result.sealed < SEAL_BATCH:
            break
    return total
