"""The overview's numbers: the backlog exporter's own measurement (core.observability.backlog) plus
the recent settlement rate, failures by code and webhook endpoints that are failing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from core.models import Transfer, TransferStatus
from core.observability import backlog
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint

RATE_WINDOW = timedelta(minutes=5)
FAILURE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class FailingEndpoint:
    id: str
    url: str
    enabled: bool
    disabled_reason: str | None
    failed_attempts: int  # in FAILURE_WINDOW
    failed_deliveries: int  # given up, ever


@dataclass(frozen=True)
class Health:
    backlog: backlog.Backlog
    settled_per_minute: float  # COMPLETED over RATE_WINDOW
    failures: list[tuple[str, int]]  # FAILED transfers by failure_code over FAILURE_WINDOW
    failing_endpoints: list[FailingEndpoint]


def measure(session: Session, now: datetime, max_requeues: int) -> Health:
    settled = session.scalar(
        select(func.count()).where(
            Transfer.status == TransferStatus.COMPLETED, Transfer.completed_at >= now - RATE_WINDOW
        )
    )
    failures = session.execute(
        select(func.coalesce(Transfer.failure_code, "UNKNOWN"), func.count())
        .where(Transfer.status == TransferStatus.FAILED, Transfer.updated_at >= now - FAILURE_WINDOW)
        .group_by(Transfer.failure_code)
        .order_by(func.count().desc())
    ).all()
    return Health(
        backlog=backlog.measure(session, now, max_requeues),
        settled_per_minute=(settled or 0) / (RATE_WINDOW.total_seconds() / 60),
        failures=[(code, n) for code, n in failures],
        failing_endpoints=failing_endpoints(session, now),
    )


def failing_endpoints(session: Session, now: datetime) -> list[FailingEndpoint]:
    failed_attempt = or_(WebhookDeliveryAttempt.status_code.is_(None), WebhookDeliveryAttempt.status_code >= 300)
    recent_failures = (
        select(WebhookDelivery.endpoint_id, func.count().label("n"))
        .join(WebhookDeliveryAttempt, WebhookDeliveryAttempt.delivery_id == WebhookDelivery.id)
        .where(WebhookDeliveryAttempt.created_at >= now - FAILURE_WINDOW, failed_attempt)
        .group_by(WebhookDelivery.endpoint_id)
        .subquery()
    )
    given_up = (
        select(WebhookDelivery.endpoint_id, func.count().label("n"))
        .where(WebhookDelivery.status == DeliveryStatus.FAILED)
        .group_by(WebhookDelivery.endpoint_id)
        .subquery()
    )
    rows = session.execute(
        select(
            WebhookEndpoint,
            func.coalesce(recent_failures.c.n, 0),
            func.coalesce(given_up.c.n, 0),
        )
        .outerjoin(recent_failures, recent_failures.c.endpoint_id == WebhookEndpoint.id)
        .outerjoin(given_up, given_up.c.endpoint_id == WebhookEndpoint.id)
        .where(or_(WebhookEndpoint.enabled.is_(False), recent_failures.c.n > 0, given_up.c.n > 0))
        .order_by(case((WebhookEndpoint.enabled.is_(False), 0), else_=1), recent_failures.c.n.desc().nulls_last())
        .limit(50)
    ).all()
    return [
        FailingEndpoint(str(e.id), e.url, e.enabled, e.disabled_reason, int(recent), int(failed))
        for e, recent, failed in rows
    ]
