"""Thin Celery tasks: take ids, open a unit of work, call the same core services as the API."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from celery import Task
from redis import Redis
from sqlalchemy.exc import OperationalError

from core.after_commit import publish_after_commit
from core.audit_seal import SEAL_BATCH, seal
from core.config import get_settings
from core.locks import AccountLocks, LockTimeout
from core.models import TransferStatus
from core.observability import metrics, tracing
from core.transfers import drain, nudges, poison
from core.transfers.holds import expire_due
from core.transfers.routing import queue_name
from core.transfers.settle import Settled, settle_batch
from core.transfers.sweep import claim_stale_pending, oldest_pending_age_seconds
from worker import resources
from worker.app import celery_app
from worker.publish import publish

log = structlog.get_logger(__name__)

# Transient: the transfer is still PENDING after any of these, so a retry is safe.
TRANSIENT = (OperationalError, LockTimeout)


# A nudge settles at most this many batches, then hands its partition on in a new message so
# one long backlog does not hold a worker process while other partitions wait.
MAX_BATCHES_PER_TASK = 40


@celery_app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=0.5,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=20,  # past this the sweeper nudges the partition again: still nothing is lost
)
def settle_partition(self: Task, partition: int) -> int:
    """A durable nudge: settle the partition's PENDING transfers, batch by batch, until none is left.

    Postgres is the queue: the message names no transfer, so a duplicate, redelivered or lost
    nudge changes nothing but timing (the sweeper nudges again). Acknowledged after the return,
    when every batch it settled has committed and anything else is still PENDING in Postgres.
    """
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(partition=partition, task_id=self.request.id)
    settings = get_settings()
    res = resources.get()
    nudges.release_nudge(res.redis, partition)  # before the first look: see core.transfers.nudges
    settled, full = 0, False
    for _ in range(MAX_BATCHES_PER_TASK):
        if not full and settings.settle_linger_ms:
            time.sleep(settings.settle_linger_ms / 1000)  # let the transfers arriving now join this batch
        with res.sessions() as session:
            batch = drain.next_batch(session, partition, settings.settle_batch_size)
        if not batch.transfer_ids:
            return settled
        outcomes = _settle(res, partition, batch)
        if outcomes is None:  # another drainer holds the partition and looks again after its commit
            return settled
        settled += len(outcomes)
        full = len(batch.transfer_ids) >= settings.settle_batch_size
    # A hand-off, not a publish for rows of this task's: the transfers left were committed by
    # their accepts, and no transaction is open here to wait for.
    enqueue_settlement(partition)
    return settled


def _settle(res: resources.Resources, partition: int, batch: drain.Batch) -> list[Settled] | None:
    """One batch in one transaction, under the Redis locks of all its accounts (released after commit).

    The locks are taken before the transaction begins, so no transaction waits on Redis."""
    settings = get_settings()
    locks = AccountLocks(res.redis, batch.account_ids, ttl=settings.lock_ttl_seconds, wait=settings.lock_wait_seconds)
    with tracing.span("acquire_account_locks", account_count=len(batch.account_ids)):
        try:
            lock = locks.acquire()
        except LockTimeout:
            metrics.LOCK_FAILURES.labels(reason="timeout").inc()
            raise
    metrics.LOCK_WAIT.observe(lock.wait_seconds)
    if lock.degraded:
        metrics.LOCK_FAILURES.labels(reason="redis_unavailable").inc()
    try:
        try:
            outcomes = _settle_part(res, partition, batch.transfer_ids, batch.atomic_batches)
        except TRANSIENT:
            raise
        except Exception as exc:  # not transient: it would fail this batch on every retry
            outcomes = _isolate(res, partition, batch.transfer_ids, exc)
    finally:
        locks.release()
    if outcomes is None:
        return None
    metrics.SETTLE_BATCH_SIZE.observe(len(outcomes))
    for outcome in outcomes:
        _record(outcome)
        log.info(
            "transfer_settled",
            request_id=outcome.request_id,  # the accepting request's id: its logs stay joined
            transfer_id=str(outcome.transfer_id),
            status=outcome.status.value,
            failure_code=outcome.failure_code,
            batch_size=len(outcomes),
            lock_wait_ms=round(lock.wait_seconds * 1000, 1),
            lock_degraded=lock.degraded,
        )
    return outcomes


def _settle_part(
    res: resources.Resources,
    partition: int,
    transfer_ids: list[uuid.UUID],
    atomic_batches: frozenset[uuid.UUID] | None = None,
) -> list[Settled] | None:
    """``transfer_ids`` settled in one transaction; None when another drainer holds the partition.
    ``atomic_batches``: theirs, as the drainer read them (None: looked up)."""
    started = time.monotonic()
    with res.sessions.begin() as session:
        if not drain.claim_partition(session, partition):
            return None
        with tracing.span("settle_batch", settle_partition=partition, transfer_count=len(transfer_ids)):
            outcomes = settle_batch(session, transfer_ids, atomic_batches=atomic_batches)
    metrics.SETTLE_TRANSACTION.observe(time.monotonic() - started)
    return outcomes


def _isolate(
    res: resources.Resources, partition: int, transfer_ids: list[uuid.UUID], error: Exception
) -> list[Settled] | None:
    """A batch failed with a non-transient error: settle its halves in turn (accept order kept),
    down to the transfers that fail alone, and end those FAILED with INTERNAL_ERROR.

    About 2·log2(n) transactions per culprit instead of the whole batch failing forever.
    Transient errors still propagate (the task retries; what committed stays committed)."""
    if len(transfer_ids) == 1:
        (transfer_id,) = transfer_ids
        with res.sessions.begin() as session:
            failed = poison.fail_unsettleable(session, transfer_id, type(error).__name__)
        if failed:
            metrics.SETTLE_POISONED.inc()
            log.error(
                "transfer_unsettleable",
                request_id=next(f.request_id for f in failed if f.transfer_id == transfer_id),
                transfer_id=str(transfer_id),
                error=type(error).__name__,  # the class only: the message may carry refused values
                linked_failed=len(failed) - 1,
            )
        return failed
    outcomes: list[Settled] = []
    for part in poison.halves(transfer_ids):
        try:
            settled = _settle_part(res, partition, part)
        except TRANSIENT:
            raise
        except Exception as exc:
            settled = _isolate(res, partition, part, exc)
        if settled is None:  # another drainer took the partition: it settles the rest
            return outcomes
        outcomes += settled
    return outcomes


def _record(outcome: Settled) -> None:
    metrics.TRANSFERS_SETTLED.labels(outcome=outcome.status.value, failure_code=outcome.failure_code or "").inc()
    metrics.ACCEPT_TO_FINAL.observe(max(0.0, (datetime.now(UTC) - outcome.accepted_at).total_seconds()))
    if outcome.status == TransferStatus.COMPLETED:
        metrics.MONEY_MOVED.labels(currency=outcome.currency, kind="TRANSFER").inc(outcome.amount)


@celery_app.task(ignore_result=True)
def heartbeat(queue: str) -> None:
    """Beat sends one to every queue: its timestamp advances only while a pool takes work from
    that queue, so a stopped, hung or missing pool shows per queue (alert NoWorkerHeartbeat)."""
    metrics.WORKER_HEARTBEAT.labels(queue=queue).set_to_current_time()


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


EXPIRE_BATCH = 500
EXPIRE_MAX_BATCHES = 20  # per run; the next beat tick continues


@celery_app.task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=0.5, max_retries=3)
def expire_holds() -> int:
    """End the holds past their expiry as EXPIRED, a batch per transaction, until none is due."""
    sessions = resources.get().sessions
    total = 0
    for _ in range(EXPIRE_MAX_BATCHES):
        with sessions.begin() as session:
            expired = expire_due(session, now=datetime.now(UTC), limit=EXPIRE_BATCH)
        total += len(expired)
        if len(expired) < EXPIRE_BATCH:
            break
    if total:
        log.info("holds_expired", count=total)
    return total


@celery_app.task(acks_late=True)
def sweep_pending() -> int:
    """Nudge the partitions of transfers accepted but still PENDING: covers a nudge lost after commit."""
    settings = get_settings()
    now = datetime.now(UTC)
    with resources.get().sessions.begin() as session:
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


def enqueue_settlement(partition: int) -> bool:
    """Nudge a partition. In a transaction, pass it to ``publish_after_commit`` so it runs only
    once the transfers it must settle have committed. A failure is logged, not raised: the rows
    are durable and the sweeper nudges again, so the client's 202 holds."""
    return publish(settle_partition, partition, queue=queue_name(partition))


def nudge_after_accept(redis: Redis, partition: int) -> None:
    """Publish the partition's nudge unless one is already waiting. Passed to
    ``publish_after_commit`` by the accept, so it runs once the transfer has committed."""
    if nudges.claim_nudge(redis, partition) and not enqueue_settlement(partition):
        nudges.release_nudge(redis, partition)  # so the next accept tries to publish again
