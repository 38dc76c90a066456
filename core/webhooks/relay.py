"""The relay: domain events (core.events) become one delivery per subscribed endpoint; due deliveries get queued.

The delivery scan takes its rows ``FOR NO KEY UPDATE SKIP LOCKED``, so any number of dispatchers
split the work instead of doubling it; the unique (event_id, endpoint_id) is the last guard
against a second delivery of one event to one endpoint.

Relaying also gives each event its place in the events feed (core/events_feed.py): relays take
turns (a transaction-scoped advisory lock, held to their commit), so the positions one relay
gives are all visible before the next relay gives any, and an event that commits late gets a
later position, never one below what a reader has already passed.

``webhook_events`` is partitioned by day of ``occurred_at`` (migration 0028): every statement
after the scan names its events by (id, occurred_at), the key, so Postgres reads one partition
per day they fall in instead of probing each of the ~40 partitions per id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, any_, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql import func

from core.events import DomainEvent
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

# pg_advisory_xact_lock key of the relay (feed positions are given one relay at a time): "feed".
FEED_LOCK = 7_201_022
FEED_POSITIONS = "webhook_events_feed_position_seq"


@dataclass(frozen=True)
class Relayed:
    events: int
    delivery_ids: list[uuid.UUID]  # new deliveries, due now: the caller queues them after commit


def relay_events(session: Session, *, now: datetime, queue_lease: timedelta, limit: int = 100) -> Relayed:
    """Fan out up to ``limit`` unrelayed events, oldest first, mark them relayed and give them
    the next feed positions, in their sequence order. Waits for a relay already at work."""
    session.execute(select(func.pg_advisory_xact_lock(FEED_LOCK)))
    # At READ COMMITTED the scan below sees what the previous lock holder committed.
    keys = [
        (row.id, row.occurred_at)
        for row in session.execute(
            select(DomainEvent.id, DomainEvent.occurred_at)
            .where(DomainEvent.relayed_at.is_(None))
            .order_by(DomainEvent.sequence)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    ]
    if not keys:
        return Relayed(0, [])
    # The events by their whole key: the partition key lets the planner prune to their days.
    picked = tuple_(DomainEvent.id, DomainEvent.occurred_at).in_(keys)
    # Endpoints of the event's owners, enabled, subscribed to its type: one INSERT … SELECT.
    targets = (
        select(
            func.gen_random_uuid(),
            DomainEvent.id,
            DomainEvent.occurred_at,
            WebhookEndpoint.id,
            DomainEvent.event_type,
            literal(DeliveryStatus.PENDING.value),
            literal(now),
            literal(now + queue_lease),
        )
        .join(
            WebhookEndpoint,
            (WebhookEndpoint.user_id == any_(DomainEvent.owner_ids))
            & WebhookEndpoint.enabled
            & (DomainEvent.event_type == any_(WebhookEndpoint.events))
            # An endpoint receives what happens after it was registered, not an unrelayed backlog.
            & (WebhookEndpoint.created_at <= DomainEvent.occurred_at),
        )
        .where(picked)
        .order_by(DomainEvent.sequence)
    )
    delivery_ids = list(
        session.scalars(
            insert(WebhookDelivery)
            .from_select(
                [
                    "id",
                    "event_id",
                    "event_occurred_at",
                    "endpoint_id",
                    "event_type",
                    "status",
                    "next_attempt_at",
                    "queued_until",
                ],
                targets,
            )
            .on_conflict_do_nothing(constraint="uq_webhook_deliveries_event_endpoint")
            .returning(WebhookDelivery.id)
        )
    )
    # Positions base+1 .. base+n, taken from the sequence in one call (no other relay draws now).
    base = session.execute(
        text("SELECT setval(:seq, nextval(:seq) + :n - 1) - :n"), {"seq": FEED_POSITIONS, "n": len(keys)}
    ).scalar_one()
    order = (
        select(
            DomainEvent.id,
            DomainEvent.occurred_at,
            func.row_number().over(order_by=DomainEvent.sequence).label("n"),
        )
        .where(picked)
        .subquery("o")
    )
    session.execute(
        update(DomainEvent)
        # ``picked`` again on the updated side: a join condition alone does not prune it.
        .where(picked, DomainEvent.id == order.c.id, DomainEvent.occurred_at == order.c.occurred_at)
        .values(relayed_at=now, feed_position=literal(base, BigInteger()) + order.c.n),
        execution_options={"synchronize_session": False},
    )
    return Relayed(len(keys), delivery_ids)


def due_deliveries(
    session: Session, *, now: datetime, queue_lease: timedelta, limit: int = 200, per_endpoint: int = 2
) -> list[uuid.UUID]:
    """PENDING deliveries whose attempt is due and that are not already queued: retries after
    their backoff, attempts lost with a crashed worker, publishes lost after a commit, deliveries
    deferred while their endpoint's slots were busy. At most ``per_endpoint`` per endpoint per
    call, so one endpoint's backlog never fills the queue ahead of the others (its slot holders
    drain the rest).

    Marks them queued until ``now + queue_lease``; the caller queues them after commit.
    """
    due = (
        select(
            WebhookDelivery.id,
            func.row_number()
            .over(partition_by=WebhookDelivery.endpoint_id, order_by=WebhookDelivery.next_attempt_at)
            .label("rank"),
        )
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.queued_until.is_(None), WebhookDelivery.queued_until <= now),
        )
        .subquery()
    )
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.id.in_(select(due.c.id).where(due.c.rank <= per_endpoint)))
            # Re-checked under the row lock: a row may have been claimed since the subquery read it.
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.queued_until.is_(None), WebhookDelivery.queued_until <= now),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )
    if ids:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(queued_until=now + queue_lease)
        )
    return ids
