"""The replay's and the backlog exporter's reads of the partitioned outbox (migration 0028) name
the events by their whole key, (id, occurred_at): the replay's upsert reads only the partitions of
its events' days, and the exporter's oldest undelivered delivery reads no event at all, but for a
delivery made before migration 0029 (no event_occurred_at), whose event it finds by id. Both
still answer with the right rows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import Connection, select, text

from core.db import database_now
from core.events import DomainEvent, EventType
from core.events_partitions import ensure_partitions
from core.observability.backlog import measure
from core.resources import webhook_policy
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from core.webhooks.replay import replay
from tests.integration.test_relay_partition_pruning import scanned, statements


def _endpoint(s, owner, settings) -> WebhookEndpoint:  # type: ignore[no-untyped-def]
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(), user_id=owner.user.id, url="https://example.com/hook", events=["account.credited"]
    )
    endpoint.secret_encrypted = webhook_policy(settings).box.encrypt("whsec_test")
    s.add(endpoint)
    return endpoint


def _event(s, owner, at) -> DomainEvent:  # type: ignore[no-untyped-def]
    event = DomainEvent(id=uuid.uuid4(), event_type=EventType.ACCOUNT_CREDITED, data={}, owner_ids=[owner.user.id])
    event.occurred_at = at
    event.relayed_at = at
    s.add(event)
    return event


def test_replay_reads_only_the_partitions_of_its_events_days(sessions, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    owner = make_customer()
    with sessions() as s:  # never committed
        now = database_now(s)
        ensure_partitions(s, now=now)
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
        endpoint = _endpoint(s, owner, settings)
        inside = [_event(s, owner, day + timedelta(hours=h)) for h in (1, 7, 23)]
        _event(s, owner, day + timedelta(days=1, hours=1))  # the next day: outside the range
        s.flush()
        conn = s.connection()
        with statements(conn) as ran:
            done = replay(s, owner.user, endpoint.id, start=day, end=day + timedelta(days=1), types=None, now=now)
        assert done.events == 3
        upsert = scanned(conn, ran, lambda sql: sql.startswith("INSERT INTO webhook_deliveries"))
        assert upsert == [{f"webhook_events_p{day:%Y%m%d}"}]
        made = s.execute(
            select(WebhookDelivery.event_id, WebhookDelivery.event_occurred_at).where(
                WebhookDelivery.endpoint_id == endpoint.id
            )
        ).all()
        assert sorted(made) == sorted((e.id, e.occurred_at) for e in inside)


def _events_read(conn: Connection, sql: str) -> list[str]:
    """The outbox partitions the statement's plan actually read (EXPLAIN ANALYZE)."""
    plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).scalar_one()
    if isinstance(plan, str):  # psycopg may hand the json over parsed already
        plan = json.loads(plan)
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if str(node.get("Relation Name", "")).startswith("webhook_events") and node.get("Actual Loops", 0) > 0:
            found.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_the_exporter_ages_deliveries_without_reading_their_events(sessions, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    owner = make_customer()
    with sessions() as s:  # never committed
        now = database_now(s)
        s.execute(
            text("UPDATE webhook_deliveries SET status = 'SUCCEEDED', next_attempt_at = NULL WHERE status = 'PENDING'")
        )
        endpoint = _endpoint(s, owner, settings)
        events = [_event(s, owner, now - timedelta(hours=h)) for h in (2, 5, 9, 30)]
        s.flush()
        for event, status in zip(events[:3], ("PENDING", "PENDING", "SUCCEEDED"), strict=True):
            s.add(
                WebhookDelivery(
                    id=uuid.uuid4(),
                    event_id=event.id,
                    event_occurred_at=event.occurred_at,
                    endpoint_id=endpoint.id,
                    event_type=event.event_type,
                    status=DeliveryStatus(status),
                    attempt=0,
                    next_attempt_at=now if status == "PENDING" else None,
                )
            )
        s.flush()
        conn = s.connection()
        with statements(conn) as ran:
            age = measure(s, now).oldest_undelivered_webhook_age_seconds
        assert abs(age - 5 * 3600) < 1  # the 9 h one was delivered
        [oldest] = [sql for sql, _ in ran if "webhook_deliveries" in sql]
        assert _events_read(conn, oldest) == []
        # A delivery made before migration 0029 carries no occurred_at: its event is found by id.
        s.add(
            WebhookDelivery(
                id=uuid.uuid4(),
                event_id=events[3].id,
                event_occurred_at=None,
                endpoint_id=endpoint.id,
                event_type=events[3].event_type,
                status=DeliveryStatus.PENDING,
                attempt=0,
                next_attempt_at=now,
            )
        )
        s.flush()
        assert abs(measure(s, now).oldest_undelivered_webhook_age_seconds - 30 * 3600) < 1
        assert _events_read(conn, oldest) != []
