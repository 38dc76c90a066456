"""Thin Celery tasks: take ids, open a unit of work, call the same core services as the API."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from celery import Task
from sqlalchemy.exc import OperationalError

from core.audit_seal import SEAL_BATCH, seal
from core.config import get_settings
from core.locks import AccountLocks, LockTimeout
from core.models import Transfer, TransferStatus
from core.observability import metrics, tracing
from core.observability.backlog import measure
from core.transfers.settle import Settled
from core.transfers.settle import settle_transfer as settle
from core.transfers.sweep import claim_stale_pending, oldest_pending_age_seconds
from worker import resources
from worker.app import QUEUES, celery_app
from worker.publish import publish

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
    locks = AccountLocks(res.redis, accounts, ttl=settings.lock_ttl_seconds, wait=settings.lock_wait_seconds)
    with tracing.span("acquire_account_locks", transfer_id=transfer_id, account_count=2):
        try:
            lock = locks.acquire()
        except LockTimeout:
            metrics.LOCK_FAILURES.labels(reason="timeout").inc()
            raise
    try:
        metrics.LOCK_WAIT.observe(lock.wait_seconds)
        if lock.degraded:
            metrics.LOCK_FAILURES.labels(reason="redis_unavailable").inc()
        started = time.monotonic()
        with tracing.span("settle", transfer_id=transfer_id) as span, res.sessions.begin() as session:
            outcome = settle(session, tid, request_id=request_id)
            span.set_attribute("transfer.status", outcome.status.value)
        metrics.SETTLE_TRANSACTION.observe(time.monotonic() - started)
    finally:
        locks.release()
    if outcome.applied:
        _record(outcome)
    log.info(
        "transfer_settled" if outcome.applied else "transfer_already_final",
        status=outcome.status.value,
        failure_code=outcome.failure_code,
        lock_wait_ms=round(lock.wait_seconds * 1000, 1),
        lock_degraded=lock.degraded,
        retries=self.request.retries,
    )
    return outcome.status.value


def _record(outcome: Settled) -> None:
    metrics.TRANSFERS_SETTLED.labels(outcome=outcome.status.value, failure_code=outcome.failure_code or "").inc()
    metrics.ACCEPT_TO_FINAL.observe(max(0.0, (datetime.now(UTC) - outcome.accepted_at).total_seconds()))
    if outcome.status == TransferStatus.COMPLETED:
        metrics.MONEY_MOVED.labels(currency=outcome.currency, kind="TRANSFER").inc(outcome.amount)


@celery_app.task(acks_late=True, ignore_result=True)
def refresh_gauges() -> None:
    """Backlog gauges for dashboards and alerts: queue depth, pending transfers, outbox."""
    res = resources.get()
    with res.sessions() as session:
        backlog = measure(session, datetime.now(UTC))
    metrics.PENDING_TRANSFERS.set(backlog.pending_transfers)
    metrics.OLDEST_PENDING_AGE.set(backlog.oldest_pending_age_seconds)
    metrics.OUTBOX_BACKLOG.set(backlog.outbox_backlog)
    metrics.AUDIT_UNSEALED.set(backlog.unsealed_audit_rows)
    metrics.AUDIT_SEAL_LAG.set(backlog.oldest_unsealed_audit_age_seconds)
    for queue, depth in queue_depths().items():
        metrics.QUEUE_LENGTH.labels(queue=queue).set(depth)
    metrics.WORKER_HEARTBEAT.set_to_current_time()


def queue_depths() -> dict[str, int]:
    """Messages waiting per queue, as the broker reports them (Redis lists or AMQP queues)."""
    depths = {}
    with celery_app.connection_for_read() as conn:
        channel = conn.default_channel
        for queue in QUEUES:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except Exception:  # a queue not declared yet has no backlog
                channel = conn.channel()
                depths[queue] = 0
    return depths


SEAL_MAX_BATCHES = 20  # per run; the next beat tick continues


@celery_app.task(acks_late=True)
def seal_audit() -> int:
    """Chain the committed audit rows, a batch per transaction, until less than a batch is left."""
    sessions = resources.get().sessions
    total = 0
    for _ in range(SEAL_MAX_BATCHES):
        with sessions.begin() as session:
            result = seal(session, limit=SEAL_BATCH)
        total += result.sealed
        if result.busy or result.sealed < SEAL_BATCH:
            break
    return total


@celery_app.task(acks_late=True)
def sweep_pending() -> int:
    """Re-queue transfers accepted but still PENDING: covers a publish lost after commit."""
    settings = get_settings()
    now = datetime.now(UTC)
    with resources.get().sessions.begin() as session:
        due = claim_stale_pending(session, older_than=timedelta(seconds=settings.sweeper_pending_age_seconds), now=now)
        oldest = oldest_pending_age_seconds(session, now)
    for tid, request_id in due:
        enqueue_settlement(tid, request_id)  # the original request id, so its logs stay joined
    if due:
        log.warning("sweeper_requeued", count=len(due), oldest_pending_age_seconds=round(oldest, 1))
    return len(due)


def enqueue_settlement(transfer_id: uuid.UUID, request_id: str | None) -> bool:
    """Publish after commit. A failure is logged, not raised: the row is durable and the
    sweeper will publish it again, so the client's 202 still holds."""
    return publish(settle_transfer, str(transfer_id), request_id=request_id)
