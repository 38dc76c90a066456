"""The outbox's day partitions (issue 28 item 4, migration 0028, core/events_partitions.py): days
are created ahead, a day past the retention is dropped whole with its deliveries while the feed
still serves its window, a day holding an event the relay has not fanned out is kept, and an
event of a day without a partition still commits (the default partition).

Everything runs in the test's own transaction, rolled back at its end (DDL included), with
dates a few weeks ahead so that the days dropped hold only this test's events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from core.db import database_now
from core.events import DomainEvent, EventType
from core.events_feed import RETENTION, feed_cursor, list_events
from core.events_partitions import drop_expired, ensure_partitions, expired, is_partition, partitions
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


def _event(s, owner: uuid.UUID, at: datetime, *, relayed: bool = True) -> DomainEvent:  # type: ignore[no-untyped-def]
    event = DomainEvent(
        id=uuid.uuid4(), event_type=EventType.ACCOUNT_CREDITED, data={"at": at.isoformat()}, owner_ids=[owner]
    )
    event.occurred_at = at
    if relayed:
        event.relayed_at = at
        event.feed_position = s.execute(text("SELECT nextval('webhook_events_feed_position_seq')")).scalar_one()
    s.add(event)
    s.flush()
    return event


def _where(s, event_id: uuid.UUID) -> str | None:  # type: ignore[no-untyped-def]
    return s.execute(
        text("SELECT CAST(tableoid::regclass AS text) FROM webhook_events WHERE id = :id"), {"id": event_id}
    ).scalar()


def test_old_days_are_dropped_whole_while_the_feed_serves_its_window(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    owner = make_customer()
    with sessions() as s:
        now = database_now(s)
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        day = today + timedelta(days=1)

        # The migration made the next days; the task makes the rest up to a week after "now".
        names = {p.name for p in partitions(s)}
        assert {"webhook_events_legacy", "webhook_events_default", f"webhook_events_p{day:%Y%m%d}"} <= names
        later = now + timedelta(days=14)
        made = ensure_partitions(s, now=later)
        assert f"webhook_events_p{later + timedelta(days=7):%Y%m%d}" in made.created and not made.skipped
        assert ensure_partitions(s, now=later).created == []  # idempotent
        assert all(is_partition(p.name) for p in partitions(s))

        old = _event(s, owner.user.id, today + timedelta(days=3, hours=12))
        stuck = _event(s, owner.user.id, today + timedelta(days=5, hours=1), relayed=False)
        young = _event(s, owner.user.id, today + timedelta(days=20, hours=6))
        assert _where(s, old.id) == f"webhook_events_p{today + timedelta(days=3):%Y%m%d}"
        endpoint = WebhookEndpoint(
            id=uuid.uuid4(), user_id=owner.user.id, url="https://example.com/hook", events=["account.credited"]
        )
        endpoint.secret_encrypted = "x"
        s.add(endpoint)
        s.flush()
        for event in (old, young):
            s.add(
                WebhookDelivery(
                    id=uuid.uuid4(),
                    event_id=event.id,
                    endpoint_id=endpoint.id,
                    event_type=EventType.ACCOUNT_CREDITED,
                    status=DeliveryStatus.SUCCEEDED,
                )
            )
        s.flush()

        # 38 days on: the days up to day 8 are past the 30 days, day 20 (18 days old) is not.
        then = today + timedelta(days=38)
        assert all(p.upper is not None and p.upper <= then - RETENTION for p in expired(s, now=then))
        result = drop_expired(s, now=then)
        assert f"webhook_events_p{today + timedelta(days=3):%Y%m%d}" in result.dropped
        assert f"webhook_events_p{today + timedelta(days=5):%Y%m%d}" in result.kept_unrelayed
        assert not result.busy
        left = {p.name for p in partitions(s)}
        assert f"webhook_events_p{today + timedelta(days=3):%Y%m%d}" not in left
        assert f"webhook_events_p{today + timedelta(days=20):%Y%m%d}" in left

        assert _where(s, old.id) is None
        assert _where(s, stuck.id) is not None  # never lost before the relay has it
        delivered = set(s.scalars(select(WebhookDelivery.event_id).where(WebhookDelivery.endpoint_id == endpoint.id)))
        assert delivered == {young.id}

        # The feed: a reader whose cursor was before the dropped day goes on to what is kept.
        assert old.feed_position is not None and young.feed_position is not None
        page = list_events(s, admin_user, after=feed_cursor(old.feed_position - 1), limit=500)
        ids = [e.id for e in page.items]
        assert young.id in ids and old.id not in ids
        mine = list_events(s, owner.user, after=feed_cursor(old.feed_position - 1), limit=500)
        assert [e.id for e in mine.items] == [young.id]

        # A day without a partition (dropped, or never made): its event still commits.
        late = _event(s, owner.user.id, today + timedelta(days=3, hours=13))
        assert _where(s, late.id) == "webhook_events_default"
        assert s.scalar(select(func.count()).select_from(DomainEvent).where(DomainEvent.id == late.id)) == 1


def test_a_day_with_rows_in_the_default_partition_is_skipped_not_failed(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    owner = make_customer()
    with sessions() as s:
        now = database_now(s)
        last = max(p.upper for p in partitions(s) if p.upper is not None)
        # An event of the day after the last partition lands in the default partition...
        stray = _event(s, owner.user.id, last + timedelta(hours=2))
        assert _where(s, stray.id) == "webhook_events_default"
        # ... so that day cannot be made (it stays in the default); the days after it can.
        made = ensure_partitions(s, now=now + timedelta(days=3))
        assert f"webhook_events_p{last:%Y%m%d}" in made.skipped
        assert f"webhook_events_p{last + timedelta(days=1):%Y%m%d}" in made.created
        assert _where(s, stray.id) == "webhook_events_default"
