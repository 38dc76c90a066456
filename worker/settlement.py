"""Settlement: the partition nudge task that drains PENDING transfers in batches, and the
helpers that publish it (after the accept's commit, or from the sweeper)."""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Literal

import structlog
from celery import Task, shared_task
from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from core.locks import AccountLocks, LockTimeout
from core.models import TransferStatus
from core.observability import metrics, tracing
from core.resources import Resources
from core.transfers import drain, nudges, poison
from core.transfers.routing import queue_name
from core.transfers.settle import Settled, settle_batch
from worker.publish import publish
from worker.runtime import resources
from worker.transient import is_transient

log = structlog.get_logger(__name__)

# A nudge settles at most this many batches, then hands its partition on in a new message so
# one long backlog does not hold a worker process while other partitions wait.
MAX_BATCHES_PER_TASK = 40
# Retries after a transient fault: 1 s doubling up to this, jittered. Short, so settlement
# resumes within seconds of the fault passing; a retry is a new message with a countdown, so no
# worker process waits for it (RabbitMQ's native delayed delivery counts whole seconds, >= 1).
RETRY_DELAY_MAX = 4.0


def retry_delay(retries: int) -> float:
    delay = min(RETRY_DELAY_MAX, 2.0**retries)
    return random.uniform(max(1.0, delay / 2), delay)


@shared_task(
    name="worker.tasks.settle_partition",  # the name messages in flight and routes carry
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=40,  # about 2.5 min; past this the sweeper nudges the partition again: nothing is lost
)
def settle_partition(self: Task, partition: int) -> int:
    """A durable nudge: settle the partition's PENDING transfers, batch by batch, until none is left.

    Postgres is the queue: the message names no transfer, so a duplicate, redelivered or lost
    nudge changes nothing but timing (the sweeper nudges again). Acknowledged after the return,
    when every batch it settled has committed and anything else is still PENDING in Postgres.
    A transient fault (worker/transient.py) retries the nudge later; what committed stays.
    """
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(partition=partition, task_id=self.request.id)
    res = resources()
    try:
        settled, left = _drain(res, partition)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("settlement_retry", error=type(exc).__name__, retries=self.request.retries)
        raise self.retry(exc=exc, countdown=retry_delay(self.request.retries)) from exc
    # Publishes for no rows of this task's (no transaction is open here): the transfers left were
    # committed by their accepts.
    if left == "handed_on":
        enqueue_settlement(partition)
    elif left == "busy" and _claim_look_again(res, partition):
        # The partition is another drainer's. A live one looks again after its commit; one that
        # died or is paused holds it until Postgres ends its transaction (settle_idle_timeout_ms):
        # this nudge, due just after that, settles what it left without waiting for the next
        # accept or the sweeper. A countdown, so no worker process waits for it.
        try:
            settle_partition.apply_async((partition,), queue=queue_name(partition), countdown=_look_again_delay(res))
        except (OSError, RedisError, KombuError) as exc:  # the sweeper is the backstop
            log.warning("settlement_look_again_failed", error=type(exc).__name__)
    return settled


def _drain(res: Resources, partition: int) -> tuple[int, Literal["done", "handed_on", "busy"]]:
    """Settle the partition's batches; how many settled, and why it stopped: nothing left, the
    task's share of batches done (the rest handed on), or another drainer holds the partition."""
    settings = res.settings
    nudges.release_nudge(res.redis, partition)  # before the first look: see core.transfers.nudges
    settled, batches, lingered = 0, 0, False
    while batches < MAX_BATCHES_PER_TASK:
        with res.sessions() as session:
            batch = drain.next_batch(session, partition, settings.settle_batch_size)
        if not batch.transfer_ids:
            return settled, "done"
        if len(batch.transfer_ids) < settings.settle_batch_size and settings.settle_linger_ms and not lingered:
            # Let the transfers arriving now join this batch, then look again. A full batch (a
            # backlog) or an empty partition never waits.
            time.sleep(settings.settle_linger_ms / 1000)
            lingered = True
            continue
        outcomes = _settle(res, partition, batch)
        if outcomes is None:  # another drainer holds the partition and looks again after its commit
            return settled, "busy"
        settled += len(outcomes)
        batches += 1
        lingered = False
    return settled, "handed_on"


def _settle(res: Resources, partition: int, batch: drain.Batch) -> list[Settled] | None:
    """One batch in one transaction, under the Redis locks of all its accounts (released after commit).

    The locks are taken before the transaction begins, so no transaction waits on Redis."""
    settings = res.settings
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
        except Exception as exc:
            if is_transient(exc):
                raise
            # Not transient: it would fail this batch on every retry.
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
    res: Resources,
    partition: int,
    transfer_ids: list[uuid.UUID],
    atomic_batches: frozenset[uuid.UUID] | None = None,
) -> list[Settled] | None:
    """``transfer_ids`` settled in one transaction; None when another drainer holds the partition.
    ``atomic_batches``: theirs, as the drainer read them (None: looked up)."""
    started = time.monotonic()
    settings = res.settings
    limits = drain.WaitLimits(settings.settle_lock_timeout_ms, settings.settle_idle_timeout_ms)
    with res.sessions.begin() as session:
        drain.bound_waits(session, limits, holder=f"settle p{partition} pid {os.getpid()}")
        if not drain.claim_partition(session, partition):
            return None
        with tracing.span("settle_batch", settle_partition=partition, transfer_count=len(transfer_ids)):
            outcomes = settle_batch(session, transfer_ids, atomic_batches=atomic_batches)
    metrics.SETTLE_TRANSACTION.observe(time.monotonic() - started)
    return outcomes


def _isolate(res: Resources, partition: int, transfer_ids: list[uuid.UUID], error: Exception) -> list[Settled] | None:
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
        except Exception as exc:
            if is_transient(exc):
                raise
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


def _look_again_delay(res: Resources) -> float:
    return res.settings.settle_idle_timeout_ms / 1000 + 1


def _claim_look_again(res: Resources, partition: int) -> bool:
    """One look-again nudge per partition at a time: a Redis flag as long as its countdown."""
    try:
        px = int(_look_again_delay(res) * 1000)
        return bool(res.redis.set(f"settle:look-again:{partition}", "1", nx=True, px=px))
    except RedisError:
        return False  # the sweeper is the backstop


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
