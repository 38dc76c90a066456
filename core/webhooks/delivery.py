"""One delivery attempt in three steps: claim (short transaction), send (no transaction), record.

The send goes through the :class:`~core.webhooks.transport.Transport` the entry point injects
(the worker's speaks HTTP), once the destination is checked here. It happens outside any
database transaction, so a slow receiver holds no row lock and no connection. While it is in
flight the delivery's ``next_attempt_at`` is a lease: a duplicate task skips it, and if the
worker dies the dispatcher picks it up once the lease ends.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import floor

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.events import DomainEvent, published_data
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from core.webhooks.policy import WebhookPolicy
from core.webhooks.retry import Verdict, decide
from core.webhooks.secrets import sign
from core.webhooks.transport import Answer, SignedMessage, Transport, TransportError
from core.webhooks.urls import Resolver, UnsafeUrl, destination, system_resolver

RESPONSE_BODY_LIMIT = 1024  # bytes of the receiver's answer kept per attempt
USER_AGENT = "transfer-processor-webhooks/1"


@dataclass(frozen=True)
class Job:
    """Everything the HTTP attempt needs, read in the claim transaction."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    attempt: int
    url: str
    msg_id: str
    body: str
    secrets: list[str] = field(repr=False)  # plain signing secrets: never logged, never queued


@dataclass(frozen=True)
class Outcome:
    status_code: int | None  # None: no answer (timeout, refused, blocked)
    duration_ms: int
    error: str | None = None
    response_body: str | None = None
    answer: Answer | None = None  # None: no usable answer, a failed attempt
    retry_after: timedelta | None = None


def message(event: DomainEvent) -> str:
    """The JSON body: the same bytes for every attempt and every endpoint of one event."""
    payload = {
        "type": event.event_type.value,
        "timestamp": event.occurred_at.isoformat(),
        "data": published_data(event),
    }
    return json.dumps(payload, separators=(",", ":"))


def signing_secrets(endpoint: WebhookEndpoint, policy: WebhookPolicy, now: datetime) -> list[str]:
    """The current secret, plus the rotated-out one while its grace period lasts."""
    secrets_ = [policy.box.decrypt(endpoint.secret_encrypted)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires is not None and expires > now:
        secrets_.append(policy.box.decrypt(endpoint.previous_secret_encrypted))
    return secrets_


def claim(session: Session, delivery_id: uuid.UUID, *, policy: WebhookPolicy, now: datetime) -> Job | None:
    """Take a due PENDING delivery for one attempt, or None if there is nothing to do now.

    Sets ``next_attempt_at`` to the end of the attempt lease, so a second task for the same
    delivery (redelivered message, dispatcher) finds it not due and does nothing.
    """
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update(skip_locked=True, key_share=True)
    ).one_or_none()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    if delivery.next_attempt_at is None or delivery.next_attempt_at > now:
        return None
    endpoint = session.get_one(WebhookEndpoint, delivery.endpoint_id)
    if not endpoint.enabled:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        return None
    event = session.scalars(_event_of(delivery)).one()
    delivery.attempt += 1
    delivery.next_attempt_at = now + policy.attempt_lease
    delivery.queued_until = delivery.next_attempt_at  # in flight counts as queued: no manual retry doubles it
    return Job(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        attempt=delivery.attempt,
        url=endpoint.url,
        msg_id=str(event.id),  # stable across retries; the same event has the same id everywhere
        body=message(event),
        secrets=signing_secrets(endpoint, policy, now),
    )


def _event_of(delivery: WebhookDelivery) -> Select[tuple[DomainEvent]]:
    """The delivery's event by its whole key, (id, occurred_at) (migrations 0028, 0029), so the
    lookup reads one day partition; by id alone (every partition) for a delivery made before
    0029 gave it occurred_at."""
    query = select(DomainEvent).where(DomainEvent.id == delivery.event_id)
    if delivery.event_occurred_at is not None:
        query = query.where(DomainEvent.occurred_at == delivery.event_occurred_at)
    return query


def endpoint_of(session: Session, delivery_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == delivery_id))


def claim_next(session: Session, endpoint_id: uuid.UUID, *, policy: WebhookPolicy, now: datetime) -> Job | None:
    """Claim the endpoint's most overdue delivery, queued or not (the holder of one of the
    endpoint's slots drains them; a task already queued for it will then find nothing to do)."""
    delivery_id = session.scalar(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return claim(session, delivery_id, policy=policy, now=now) if delivery_id is not None else None


def defer(session: Session, delivery_id: uuid.UUID, *, now: datetime) -> None:
    """Every slot of the endpoint is busy: leave the due delivery unqueued, for the slot holder
    (which drains the endpoint) or the dispatcher's next tick, without using up an attempt."""
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,  # not one claimed meanwhile: its lease stays
        )
        .values(queued_until=None)
    )


def send(job: Job, *, policy: WebhookPolicy, transport: Transport, resolve: Resolver = system_resolver) -> Outcome:
    """Send the signed message through ``transport``. Never raises for the receiver's sake: every
    failure is an Outcome."""
    started = time.monotonic()
    try:
        target = destination(job.url, policy.rules, resolve)  # DNS may point elsewhere than at registration
    except UnsafeUrl as exc:
        return Outcome(None, 0, error=f"destination refused: {exc.reason}")
    timestamp = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": job.msg_id,
        "webhook-timestamp": str(floor(timestamp.timestamp())),
        "webhook-signature": sign(job.secrets, job.msg_id, timestamp, job.body),
    }
    message = SignedMessage(job.url, target, headers, job.body.encode(), policy.timeout, RESPONSE_BODY_LIMIT)
    try:
        reply = transport.send(message)
    except TransportError as exc:
        return Outcome(None, _ms(started), error=exc.reason)
    elapsed = _ms(started)
    if elapsed > policy.timeout * 1000:
        # Each read was within the timeout but the whole answer was not: not a success.
        return Outcome(None, elapsed, error="timeout", response_body=reply.body)
    return Outcome(
        reply.status_code, elapsed, response_body=reply.body, answer=reply.answer, retry_after=reply.retry_after
    )


def record(
    session: Session, job: Job, outcome: Outcome, *, policy: WebhookPolicy, now: datetime
) -> DeliveryStatus | None:
    """Store the attempt and decide what follows: done, retry at a time, failed, endpoint disabled.

    Returns the delivery's status, or None when the delivery is gone (endpoint deleted meanwhile).
    """
    delivery = session.get(WebhookDelivery, job.delivery_id, with_for_update=ROW_LOCK)
    if delivery is None:
        return None
    session.add(
        WebhookDeliveryAttempt(
            delivery_id=delivery.id,
            attempt=job.attempt,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error=outcome.error[:200] if outcome.error else None,
            response_body=outcome.response_body,
        )
    )
    if delivery.attempt != job.attempt or delivery.status != DeliveryStatus.PENDING:
        return delivery.status  # a manual retry started a newer attempt: that one decides
    decision = decide(
        outcome.answer,
        attempt=job.attempt,
        schedule=policy.schedule,
        retry_after=outcome.retry_after,
        now=now,
    )
    delivery.response_status = outcome.status_code
    delivery.queued_until = None
    if decision.verdict == Verdict.RETRY:
        delivery.next_attempt_at = decision.next_attempt_at
        return delivery.status
    delivery.status = DeliveryStatus.SUCCEEDED if decision.verdict == Verdict.SUCCEEDED else DeliveryStatus.FAILED
    delivery.next_attempt_at = None
    if decision.verdict == Verdict.GONE:
        _disable(session, job.endpoint_id, "GONE")
    return delivery.status


def _disable(session: Session, endpoint_id: uuid.UUID, reason: str) -> None:
    endpoint = session.get(WebhookEndpoint, endpoint_id, with_for_update=ROW_LOCK)
    if endpoint is None or not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    audit.record(
        session,
        action="webhook.endpoint_disabled",
        entity_type="webhook_endpoint",
        entity_id=endpoint.id,
        actor_id=None,
        details={"reason": reason},
    )


def _ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))
