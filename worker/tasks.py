"""Thin Celery tasks: take ids, open a unit of work, call the same core services as the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog
from celery import Task
from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from core.config import get_settings
from core.locks import LockTimeout, account_locks
from core.models import Transfer
from core.transfers.settle import settle_transfer as settle
from core.transfers.sweep import oldest_pending_age_seconds, stale_pending_ids
from worker import resources
from worker.app import celery_app

log = structlog.get_logger(__name__)

# Transient: the transfer is still PENDING after any of these, so a retry is safe.
TRANSIENT = (OperationalError, LockTimeout)


@celery_app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=0.5,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=20,  # past this the sweeper re-queues it: still nothing is lost
)
def settle_transfer(self: Task, transfer_id: str, request_id: str | None = None) -> str:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, transfer_id=transfer_id, task_id=self.request.id)
    settings = get_settings()
    res = resources.get()
    tid = uuid.UUID(transfer_id)
    with res.sessions() as session:
        pair = session.get(Transfer, tid)
        if pair is None:
            log.error("settle_unknown_transfer")
            return "missing"
        accounts = (pair.source_account_id, pair.destination_account_id)
    with (
        account_locks(res.redis, accounts, ttl=settings.lock_ttl_seconds, wait=settings.lock_wait_seconds) as lock,
        res.sessions.begin() as session,
    ):
        outcome = settle(session, tid, request_id=request_id)
    log.info(
        "transfer_settled" if outcome.applied else "transfer_already_final",
        status=outcome.status.value,
        failure_code=outcome.failure_code,
        lock_wait_ms=round(lock.wait_seconds * 1000, 1),
        lock_degraded=lock.degraded,
        retries=self.request.retries,
    )
    return outcome.status.value


@celery_app.task(acks_late=True)
def sweep_pending() -> int:
    """Re-queue transfers accepted but still PENDING: covers a publish lost after commit."""
    settings = get_settings()
    now = datetime.now(UTC)
    with resources.get().sessions() as session:
        ids = stale_pending_ids(
            session, older_than=timedelta(seconds=settings.sweeper_pending_age_seconds), now=now
        )
        oldest = oldest_pending_age_seconds(session, now)
    for tid in ids:
        enqueue_settlement(tid, request_id=None)
    if ids:
        log.warning("sweeper_requeued", count=len(ids), oldest_pending_age_seconds=round(oldest, 1))
    return len(ids)


def enqueue_settlement(transfer_id: uuid.UUID, request_id: str | None) -> bool:
    """Publish after commit. A failure is logged, not raised: the row is durable and the
    sweeper will publish it again, so the client's 202 still holds."""
    try:
        settle_transfer.apply_async(
            args=[str(transfer_id)],
            kwargs={"request_id": request_id},
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )
        return True
    except (OSError, RedisError, KombuError) as exc:
        log.error("enqueue_failed", transfer_id=str(transfer_id), error=type(exc).__name__)
        return False
