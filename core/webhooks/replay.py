"""Replay: a range of an endpoint's events delivered again, with their original ids (webhook-id).

An event has at most one delivery per endpoint (unique ``(event_id, endpoint_id)``), so a replay
makes that delivery due again with a fresh retry schedule (``attempt`` back to 0) where it exists,
and creates it where the endpoint never had one (it was registered later, or not subscribed to
that type then). A delivery still PENDING is left as it is: it is going to be sent anyway. The
dispatcher (``relay.due_deliveries``) then queues them, a few per endpoint per tick, and each
endpoint's slot holders drain the rest: a replay of 10,000 events never floods the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import any_, literal, select, text
from sqlalchemy.orm import Session

from core import audit
from core.errors import Conflict, NotFound, ValidationFailed
from core.events import DomainEvent, EventType
from core.events_feed import RETENTION
from core.models import User
from core.webhooks.models import WebhookEndpoint

MAX_EVENTS = 10_000

# The events are named by their whole key, id and occurred_at (webhook_events is partitioned by
# day of occurred_at, migration 0028): by id alone, Postgres would probe every day partition for
# each id; with the days, it reads only theirs. (Each id is one event, so the two lists select
# exactly the events picked.)

_UPSERT = """
INSERT INTO webhook_deliveries (id, event_id, event_occurred_at, endpoint_id, event_type, status, attempt,
                                next_attempt_at)
SELECT gen_random_uuid(), e.id, e.occurred_at, :endpoint_id, e.event_type, 'PENDING', 0, :now
  FROM webhook_events e WHERE e.id = ANY(:ids) AND e.occurred_at = ANY(:occurred)
    ON CONFLICT ON CONSTRAINT uq_webhook_deliveries_event_endpoint DO UPDATE
   SET status = 'PENDING', attempt = 0, next_attempt_at = :now, queued_until = NULL,
       event_occurred_at = EXCLUDED.event_occurred_at
 WHERE webhook_deliveries.status <> 'PENDING'
"""


@dataclass(frozen=True)
class Replayed:
    events: int  # events in the range: each is delivered again (or still pending)


def replay(
    session: Session,
    user: User,
    endpoint_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    types: Collection[EventType] | None,
    now: datetime,
    request_id: str | None = None,
) -> Replayed:
    """Deliver the endpoint owner's events of ``[start, end)`` (their ``created_at``) of ``types``
    (default: the endpoint's) to the endpoint again. 422 for a reversed range, one reaching past
    the retention, or more than MAX_EVENTS events. Audited."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.user_id != user.id:
        raise NotFound("webhook endpoint not found")
    if not endpoint.enabled:
        raise Conflict(f"webhook endpoint is disabled ({endpoint.disabled_reason})")
    if end < start:
        raise ValidationFailed("to is before from", errors={"to": ["Must not be before from."]})
    if start < now - RETENTION:
        days = RETENTION // timedelta(days=1)
        raise ValidationFailed("range older than the retention", errors={"from": [f"At most {days} days ago."]})
    wanted = list(types) if types else [EventType(t) for t in endpoint.events]
    keys = list(
        session.execute(
            select(DomainEvent.id, DomainEvent.occurred_at)
            .where(
                literal(user.id) == any_(DomainEvent.owner_ids),
                DomainEvent.occurred_at >= start,
                DomainEvent.occurred_at < end,
                DomainEvent.event_type.in_(wanted),
                DomainEvent.relayed_at.is_not(None),  # the relay delivers the others anyway
            )
            .order_by(DomainEvent.sequence)
            .limit(MAX_EVENTS + 1)
        )
    )
    ids, occurred = [key.id for key in keys], sorted({key.occurred_at for key in keys})
    if len(ids) > MAX_EVENTS:
        raise ValidationFailed(
            "too many events in the range", errors={"to": [f"At most {MAX_EVENTS} events per replay."]}
        )
    if ids:
        session.execute(text(_UPSERT), {"ids": ids, "occurred": occurred, "endpoint_id": endpoint.id, "now": now})
    audit.record(
        session,
        action="webhook.events_replayed",
        entity_type="webhook_endpoint",
        entity_id=endpoint.id,
        actor_id=user.id,
        request_id=request_id,
        details={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "types": sorted(t.value for t in wanted),
            "events": len(ids),
        },
    )
    return Replayed(events=len(ids))
