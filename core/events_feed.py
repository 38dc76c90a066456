"""The events feed (GET /events): committed domain events in the order they became visible.

An event is listed by its ``feed_position``, which the webhook relay gives it after it has
committed (core/webhooks/relay.py: one relay at a time, positions drawn under an advisory lock
held to the relay's commit). So every position a reader can see was given after every smaller
one was already visible: a reader that lists positions up to the largest one it sees, and next
time asks for what lies above, never skips an event, also one whose transaction committed
after a later-numbered event was listed, and never lists one twice. A plain ``sequence > last``
would skip those: sequence numbers are drawn at insert, in another order than commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import any_, delete, func, literal, select
from sqlalchemy.orm import Session

from core.events import DomainEvent, EventType, published_data
from core.models import Role, User
from core.pagination import decode_cursor, encode_cursor
from core.webhooks.models import WebhookDelivery

MAX_LIMIT = 500
# Positions one request reads through at most: a customer whose events are rare among everyone's
# still gets an answer in bounded time (an empty page whose cursor has moved on).
SCAN_WINDOW = 5000
RETENTION = timedelta(days=30)  # the promise: events are kept at least this long
PRUNE_BATCH = 1000

_KEYS = (DomainEvent.feed_position,)


@dataclass(frozen=True)
class FeedEvent:
    id: uuid.UUID
    sequence: int  # the feed position: strictly increasing in the order listed
    type: str
    created_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class FeedPage:
    items: list[FeedEvent]
    next_cursor: str  # always present: the position up to which this page has read


def feed_cursor(position: int) -> str:
    return encode_cursor([position], _KEYS)


def list_events(
    session: Session, user: User, *, after: str | None, types: Collection[EventType] = (), limit: int = 100
) -> FeedPage:
    """The caller's events (an admin's: everyone's) above the cursor ``after``, oldest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError("limit out of range")
    # The largest position visible now: every smaller one is final (given and committed, or never).
    top = session.scalar(select(func.max(DomainEvent.feed_position)))
    if after is not None:
        start = int(decode_cursor(after, _KEYS)[0])
    else:
        first = session.scalar(select(func.min(DomainEvent.feed_position)))
        start = first - 1 if first is not None else 0
    if top is None or top <= start:
        return FeedPage([], feed_cursor(start))
    end = min(start + SCAN_WINDOW, top)
    query = (
        select(DomainEvent)
        .where(DomainEvent.feed_position > start, DomainEvent.feed_position <= end)
        .order_by(DomainEvent.feed_position)
        .limit(limit)
    )
    if user.role != Role.ADMIN:
        query = query.where(literal(user.id) == any_(DomainEvent.owner_ids))
    if types:
        query = query.where(DomainEvent.event_type.in_(list(types)))
    rows = list(session.scalars(query))
    items = [
        FeedEvent(
            id=e.id,
            sequence=e.feed_position or 0,
            type=e.event_type.value,
            created_at=e.occurred_at,
            data=published_data(e),
        )
        for e in rows
    ]
    # A full page stops at its last item; a short one has read the whole window.
    reached = items[-1].sequence if len(items) == limit else end
    return FeedPage(items, feed_cursor(reached))


def prune(session: Session, *, now: datetime, batch: int = PRUNE_BATCH) -> int:
    """Delete up to ``batch`` listed events older than the retention, oldest position first, with
    their deliveries; the caller commits and calls again while it returns ``batch``. Rows taken
    ``SKIP LOCKED``, short transactions: no long lock on the outbox."""
    oldest = list(
        session.execute(
            select(DomainEvent.id, DomainEvent.occurred_at)
            .where(DomainEvent.feed_position.is_not(None))
            .order_by(DomainEvent.feed_position)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    )
    # Positions follow time closely: stop at the first event still inside the retention.
    cutoff = now - RETENTION
    ids = []
    for event_id, occurred_at in oldest:
        if occurred_at >= cutoff:
            break
        ids.append(event_id)
    if not ids:
        return 0
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
    session.execute(delete(DomainEvent).where(DomainEvent.id.in_(ids)))
    return len(ids)
