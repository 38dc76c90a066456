"""Webhook tasks on their own ``webhooks`` queue: relay the outbox, queue due deliveries, deliver one.

Tasks take only ids. Secrets are read and decrypted inside the delivery task, never queued.
"""

from __future__ import annotations

import time
import uuid

import structlog
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from core.after_commit import publish_after_commit
from core.db import database_now
from core.observability import metrics
from core.webhooks import delivery, slots
from core.webhooks.policy import WebhookPolicy
from core.webhooks.relay import due_deliveries, relay_events
from worker.http_transport import HttpTransport
from worker.publish import publish
from worker.runtime import resources

log = structlog.get_logger(__name__)
TRANSPORT = HttpTransport()

RELAY_BATCH = 200
RELAY_MAX_BATCHES = 20  # per run; the next beat tick continues


def _policy() -> WebhookPolicy:
    return resources().policies.webhooks  # built once with this process's resources


@shared_task(name="worker.webhooks.relay_outbox", acks_late=True)
def relay_outbox() -> int:
    """Outbox events -> deliveries (one per subscribed endpoint), each queued after commit."""
    policy = _policy()
    sessions = resources().sessions
    total = 0
    for _ in range(RELAY_MAX_BATCHES):
        with sessions.begin() as session:
            relayed = relay_events(
                session, now=database_now(session), queue_lease=policy.queue_lease, limit=RELAY_BATCH
            )
            for delivery_id in relayed.delivery_ids:
                publish_after_commit(session, enqueue_delivery, delivery_id)
        total += relayed.events
        if relayed.events < RELAY_BATCH:
            break
    if total:
        log.info("webhook_events_relayed", events=total)
    return total


@shared_task(name="worker.webhooks.dispatch_due", acks_late=True)
def dispatch_due() -> int:
    """Queue deliveries whose retry is due, or whose task or worker was lost (lease expired)."""
    policy = _policy()
    with resources().sessions.begin() as session:
        ids = due_deliveries(
            session,
            now=database_now(session),
            queue_lease=policy.queue_lease,
            per_endpoint=policy.endpoint_concurrency,
        )
        for delivery_id in ids:
            publish_after_commit(session, enqueue_delivery, delivery_id)
    return len(ids)


@shared_task(
    name="worker.webhooks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,  # whole seconds: with jitter Celery draws randrange(backoff), which refuses 0.5
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=10,  # past this the dispatcher picks the delivery up when its lease ends
    # soft_time_limit comes from the settings: task_annotations in worker/app.py.
)
def deliver(delivery_id: str) -> str:
    """One attempt of the delivery, under one of its endpoint's slots (core.webhooks.slots).

    With every slot busy the delivery is left for the slot holders and the dispatcher, and this
    worker process moves on to other partners' deliveries. A slot holder keeps attempting the
    endpoint's due deliveries for up to one HTTP timeout, so a busy endpoint needs no dispatcher
    tick per delivery and a slow one holds its slot about as long as one attempt."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id)
    policy = _policy()
    res = resources()
    with res.sessions() as session:
        endpoint_id = delivery.endpoint_of(session, uuid.UUID(delivery_id))
    if endpoint_id is None:
        return "skipped"
    slot = slots.acquire(
        res.redis,
        endpoint_id,
        limit=policy.endpoint_concurrency,
        ttl_seconds=policy.attempt_lease.total_seconds(),
    )
    if slot is None:
        with res.sessions.begin() as session:
            delivery.defer(session, uuid.UUID(delivery_id), now=database_now(session))
        return "deferred"
    try:
        with res.sessions.begin() as session:
            job = delivery.claim(session, uuid.UUID(delivery_id), policy=policy, now=database_now(session))
        result = _attempt(job, policy) if job is not None else "skipped"
        drain_until = time.monotonic() + policy.timeout
        while time.monotonic() < drain_until:
            with res.sessions.begin() as session:
                job = delivery.claim_next(session, endpoint_id, policy=policy, now=database_now(session))
            if job is None:
                break
            _attempt(job, policy)
    finally:
        slots.release(res.redis, slot)
    return result


def _attempt(job: delivery.Job, policy: WebhookPolicy) -> str:
    sessions = resources().sessions
    try:
        outcome = delivery.send(job, policy=policy, transport=TRANSPORT)  # outside any transaction
    except SoftTimeLimitExceeded:
        outcome = delivery.Outcome(None, round(policy.timeout * 3000), error="timeout")
    with sessions.begin() as session:
        status = delivery.record(session, job, outcome, policy=policy, now=database_now(session))
    metrics.WEBHOOK_ATTEMPT_SECONDS.observe(outcome.duration_ms / 1000)
    if status is not None:
        label = {"SUCCEEDED": "succeeded", "FAILED": "failed"}.get(status.value, "retry")
        metrics.WEBHOOK_DELIVERIES.labels(outcome=label).inc()
        metrics.count_webhook_attempt(str(job.endpoint_id), ok=status.value == "SUCCEEDED")
    log.info(
        "webhook_attempt",
        delivery_id=str(job.delivery_id),
        endpoint_id=str(job.endpoint_id),
        event_id=job.msg_id,
        attempt=job.attempt,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        delivery_status=status.value if status else None,
    )
    return status.value if status else "gone"


def enqueue_delivery(delivery_id: uuid.UUID) -> bool:
    """Queue one delivery; pass it to ``publish_after_commit`` in the transaction that queued the
    row. A failure is logged, not raised: the dispatcher queues it again once its queue lease ends."""
    return publish(deliver, str(delivery_id))
