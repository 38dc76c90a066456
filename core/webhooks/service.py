"""Partner endpoints and their deliveries, always through the owner: another user's is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import Conflict, NotFound, ValidationFailed
from core.events import EVENT_TYPES
from core.models import User
from core.pagination import Page, newest_first, paginate
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from core.webhooks.policy import WebhookPolicy
from core.webhooks.secrets import SecretBox, generate_secret
from core.webhooks.urls import Resolver, check_url, system_resolver

MAX_ENDPOINTS_PER_USER = 20


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # the only time the plain secret leaves the service


@dataclass(frozen=True)
class Retried:
    delivery: WebhookDelivery
    queued: bool  # False: an attempt was already queued or in flight, nothing changed


def create_endpoint(
    session: Session,
    user: User,
    *,
    url: str,
    events: Sequence[str],
    description: str | None,
    policy: WebhookPolicy,
    request_id: str | None = None,
    resolve: Resolver = system_resolver,
) -> CreatedEndpoint:
    """Register ``url`` for ``events`` about the user's accounts; returns the new secret once."""
    check_url(url, policy.rules, resolve)
    wanted = _event_list(events)
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == user.id))
    if (count or 0) >= MAX_ENDPOINTS_PER_USER:
        raise ValidationFailed(f"at most {MAX_ENDPOINTS_PER_USER} webhook endpoints per user")
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        user_id=user.id,
        url=url,
        description=description,
        events=wanted,
        enabled=True,
        secret_encrypted=policy.box.encrypt(secret),
    )
    session.add(endpoint)
    session.flush()  # id and created_at for the response and the audit row
    _audit(session, "webhook.endpoint_created", endpoint, user, request_id, {"events": wanted})
    return CreatedEndpoint(endpoint, secret)


def list_endpoints(session: Session, user: User) -> Sequence[WebhookEndpoint]:
    return session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user.id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()


def get_endpoint(session: Session, user: User, endpoint_id: uuid.UUID, *, lock: bool = False) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id, with_for_update=ROW_LOCK if lock else False)
    if endpoint is None or endpoint.user_id != user.id:
        raise NotFound("webhook endpoint not found")
    return endpoint


def delete_endpoint(session: Session, user: User, endpoint_id: uuid.UUID, request_id: str | None = None) -> None:
    """Deletes the endpoint with its deliveries and attempts (ON DELETE CASCADE); the audit row stays."""
    endpoint = get_endpoint(session, user, endpoint_id, lock=True)
    _audit(session, "webhook.endpoint_deleted", endpoint, user, request_id, {})
    session.delete(endpoint)


def rotate_secret(
    session: Session,
    user: User,
    endpoint_id: uuid.UUID,
    *,
    policy: WebhookPolicy,
    now: datetime,
    request_id: str | None = None,
) -> str:
    """A new secret signs from now on; the current one also signs until ``now + grace``."""
    endpoint = get_endpoint(session, user, endpoint_id, lock=True)
    secret = generate_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + policy.secret_grace
    endpoint.secret_encrypted = policy.box.encrypt(secret)
    _audit(
        session,
        "webhook.secret_rotated",
        endpoint,
        user,
        request_id,
        {"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()},
    )
    return secret


def list_deliveries(
    session: Session, user: User, endpoint_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[WebhookDelivery]:
    endpoint = get_endpoint(session, user, endpoint_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    return paginate(session, stmt, newest_first(WebhookDelivery), cursor, limit)


def retry_delivery(
    session: Session,
    user: User,
    delivery_id: uuid.UUID,
    *,
    policy: WebhookPolicy,
    now: datetime,
    request_id: str | None = None,
) -> Retried:
    """Make a delivery due now; the caller queues it after commit when ``queued`` says so.

    One more attempt, whatever the status: a FAILED delivery whose retries are used up gets a
    single attempt (no new schedule), a PENDING one is simply brought forward. While an attempt
    is queued or in flight, a retry changes nothing (at most one queued per delivery: the bank
    is nobody's flooder); the caller answers the same 202.
    """
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=ROW_LOCK)
    if delivery is None:
        raise NotFound("webhook delivery not found")
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or endpoint.user_id != user.id:
        raise NotFound("webhook delivery not found")
    if not endpoint.enabled:
        raise Conflict(f"webhook endpoint is disabled ({endpoint.disabled_reason})")
    if delivery.status == DeliveryStatus.PENDING and delivery.queued_until is not None and delivery.queued_until > now:
        return Retried(delivery, queued=False)
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.queued_until = now + policy.queue_lease
    _audit(session, "webhook.delivery_retried", endpoint, user, request_id, {"delivery_id": str(delivery.id)})
    return Retried(delivery, queued=True)


def reencrypt_secrets(session: Session, box: SecretBox) -> int:
    """Re-encrypt every stored endpoint secret (current and rotated-out) under the box's current
    key, audited; returns how many endpoints were rewritten. Afterwards the previous keys can go.

    Rows are locked in id order, so a concurrent secret rotation waits instead of writing a
    ciphertext this pass would miss.
    """
    endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id).with_for_update(**ROW_LOCK))
    count = 0
    for endpoint in endpoints:
        endpoint.secret_encrypted = box.rotate(endpoint.secret_encrypted)
        if endpoint.previous_secret_encrypted is not None:
            endpoint.previous_secret_encrypted = box.rotate(endpoint.previous_secret_encrypted)
        count += 1
    audit.record(
        session,
        action="webhook.secrets_key_rotated",
        entity_type="webhook_endpoint",
        entity_id=None,
        actor_id=None,
        details={"endpoints": count},
    )
    return count


def _event_list(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed("unknown event types", errors={"events": [f"Unknown event type: {e}." for e in unknown]})
    if not events:
        raise ValidationFailed("no event types", errors={"events": ["Choose at least one event type."]})
    return list(dict.fromkeys(events))  # dedupe, keep the partner's order


def _audit(
    session: Session,
    action: str,
    endpoint: WebhookEndpoint,
    user: User,
    request_id: str | None,
    details: dict[str, object],
) -> None:
    # The URL may carry a partner's token in its query string: only the host is kept.
    audit.record(
        session,
        action=action,
        entity_type="webhook_endpoint",
        entity_id=endpoint.id,
        actor_id=user.id,
        request_id=request_id,
        details={"host": urlsplit(endpoint.url).hostname, **details},
    )
