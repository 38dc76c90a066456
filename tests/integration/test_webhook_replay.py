"""POST /webhooks/endpoints/{id}/replay: a range of the endpoint's events delivered again with
their original ids (the webhook-id a partner dedupes by, and the feed's id), bounded, audited."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from core.events import DomainEvent, EventType, emit
from core.events_feed import list_events
from core.models import AuditLog
from core.resources import webhook_policy
from core.webhooks import delivery, service
from core.webhooks.models import DeliveryStatus, WebhookDelivery
from core.webhooks.policy import WebhookPolicy
from core.webhooks.relay import relay_events
from tests.integration.test_api import assert_problem, login

NOWHERE = "http://127.0.0.1:9/discard"


@pytest.fixture
def policy(settings) -> WebhookPolicy:  # type: ignore[no-untyped-def]
    return dataclasses.replace(webhook_policy(settings), schedule=(3600.0, 3600.0))


def put(s, owner: uuid.UUID, event_type: EventType = EventType.ACCOUNT_CREDITED) -> DomainEvent:  # type: ignore[no-untyped-def]
    event = emit(s, event_type, {"id": str(uuid.uuid4())}, [owner])
    assert event is not None
    return event


def relay_all(sessions, policy) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        while relay_events(s, now=datetime.now(UTC), queue_lease=policy.queue_lease, limit=1000).events:
            pass


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}


def test_replay_delivers_the_range_again_with_the_original_ids(client, sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    with sessions.begin() as s:
        ep = service.create_endpoint(
            s, alice.user, url=NOWHERE, events=["account.credited"], description=None, policy=policy
        ).endpoint
        inside = [put(s, alice.user.id) for _ in range(3)]
        old = put(s, alice.user.id)
        put(s, alice.user.id, EventType.ACCOUNT_DEBITED)  # not a type of the endpoint
        put(s, bob.user.id)  # another owner's
    relay_all(sessions, policy)
    with sessions.begin() as s:
        s.execute(update(DomainEvent).where(DomainEvent.id == old.id).values(
            occurred_at=datetime.now(UTC) - timedelta(days=2)))  # fmt: skip
        s.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id).values(
            status=DeliveryStatus.FAILED, attempt=8, next_attempt_at=None))  # fmt: skip
    headers = login(client, alice.email)
    r = client.post(f"/api/v1/webhooks/endpoints/{ep.id}/replay", json=window(), headers=headers)
    assert r.status_code == 202, r.json
    assert r.json == {"events": 3}
    with sessions() as s:
        rows = s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id)).all()
        again = {d.event_id: d for d in rows if d.status == DeliveryStatus.PENDING}
        assert set(again) == {e.id for e in inside}
        assert all(d.attempt == 0 and d.next_attempt_at is not None for d in again.values())
        # The attempt carries the event's own id as webhook-id, which is the feed's id too.
        job = delivery.claim(
            s, next(iter(again.values())).id, policy=policy, now=datetime.now(UTC) + timedelta(seconds=1)
        )
        assert job is not None and uuid.UUID(job.msg_id) in {e.id for e in inside}
        feed_ids: set[uuid.UUID] = set()
        after = None  # the whole feed: in a full run, other tests' events come before alice's
        while True:
            page = list_events(s, alice.user, after=after, limit=500)
            feed_ids |= {e.id for e in page.items}
            if page.next_cursor == after:
                break
            after = page.next_cursor
        assert uuid.UUID(job.msg_id) in feed_ids
        audited = s.scalars(select(AuditLog).where(AuditLog.action == "webhook.events_replayed",
                                                   AuditLog.entity_id == str(ep.id))).all()  # fmt: skip
        assert len(audited) == 1 and audited[0].details["events"] == 3


def test_replay_reaches_an_endpoint_registered_after_the_events(client, sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with sessions.begin() as s:
        before = put(s, alice.user.id)
    relay_all(sessions, policy)
    with sessions.begin() as s:
        s.execute(update(DomainEvent).where(DomainEvent.id == before.id).values(
            occurred_at=datetime.now(UTC) - timedelta(minutes=30)))  # fmt: skip
        ep = service.create_endpoint(
            s, alice.user, url=NOWHERE, events=["account.credited"], description=None, policy=policy
        ).endpoint
    r = client.post(
        f"/api/v1/webhooks/endpoints/{ep.id}/replay",
        json={**window(), "types": ["account.credited"]},
        headers=login(client, alice.email),
    )
    assert r.status_code == 202 and r.json == {"events": 1}
    with sessions() as s:
        got = s.scalars(select(WebhookDelivery.event_id).where(WebhookDelivery.endpoint_id == ep.id)).all()
    assert got == [before.id]


def test_replay_refusals(client, sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    with sessions.begin() as s:
        ep = service.create_endpoint(
            s, alice.user, url=NOWHERE, events=["account.credited"], description=None, policy=policy
        ).endpoint
    headers = login(client, alice.email)
    url = f"/api/v1/webhooks/endpoints/{ep.id}/replay"
    now = datetime.now(UTC)
    reversed_ = {"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}
    assert "to" in assert_problem(client.post(url, json=reversed_, headers=headers), 422, "VALIDATION_ERROR")["errors"]
    too_old = {"from": (now - timedelta(days=31)).isoformat(), "to": now.isoformat()}
    assert "from" in assert_problem(client.post(url, json=too_old, headers=headers), 422, "VALIDATION_ERROR")["errors"]
    assert_problem(client.post(url, json={**window(), "types": ["nope"]}, headers=headers), 422, "VALIDATION_ERROR")
    assert_problem(client.post(url, json={"from": "yesterday", "to": now.isoformat()}, headers=headers), 422,
                   "VALIDATION_ERROR")  # fmt: skip
    stranger = login(client, bob.email)
    assert_problem(client.post(url, json=window(), headers=stranger), 404, "NOT_FOUND")
    with sessions.begin() as s:  # 10,001 relayed events in the range: one too many
        s.execute(
            text(
                "INSERT INTO webhook_events (id, event_type, data, owner_ids, relayed_at)"
                " SELECT gen_random_uuid(), 'account.credited', '{}', ARRAY[CAST(:owner AS uuid)], now()"
                " FROM generate_series(1, 10001)"
            ),
            {"owner": alice.user.id},
        )
    body = assert_problem(client.post(url, json=window(), headers=headers), 422, "VALIDATION_ERROR")
    assert "10000" in str(body["errors"])
