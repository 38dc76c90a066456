"""Webhooks against real Postgres: the outbox written with each change, the relay, one delivery
attempt (claim, POST to a real receiver, record), and the endpoints API through the Flask app.

The e2e tier's workers may still be running (beat relays every 0.5 s): these tests assert on
their own rows only, and park their deliveries out of the dispatcher's reach where it matters.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from core.events import DomainEvent, EventType, emit
from core.models import AuditLog, Transfer
from core.resources import webhook_policy
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from core.webhooks import delivery, service, slots
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from core.webhooks.policy import WebhookPolicy
from core.webhooks.relay import relay_events
from tests.factories import fund
from tests.integration.test_api import assert_problem, login
from tests.receiver import Receiver, Reply, running
from tests.settling import settle_transfer
from worker.http_transport import HttpTransport

NOWHERE = "http://127.0.0.1:9/discard"  # nothing listens: a stray worker attempt harms nothing


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from running()


@pytest.fixture(scope="module")
def policy(settings) -> WebhookPolicy:  # type: ignore[no-untyped-def]
    # Retries an hour away: a running dispatcher never takes these tests' deliveries.
    return dataclasses.replace(webhook_policy(settings), schedule=(3600.0, 3600.0))


def events_for(sessions, transfer_id: uuid.UUID) -> list[DomainEvent]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        stmt = select(DomainEvent).where(DomainEvent.data["id"].astext == str(transfer_id))
        return list(s.scalars(stmt.order_by(DomainEvent.sequence)))


def submit(sessions, customer, dest, amount: int) -> Transfer:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        movement = MoneyMovement(customer.account.id, dest.account.id, amount, "USD", "inv 1")
        return submit_transfer(s, user=customer.user, idempotency_key=str(uuid.uuid4()), movement=movement).transfer


def endpoint(sessions, policy, customer, events: list[str], url: str = NOWHERE) -> WebhookEndpoint:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return service.create_endpoint(
            s, customer.user, url=url, events=events, description=None, policy=policy
        ).endpoint


# ---- the outbox ---------------------------------------------------------------------------


def test_a_transfer_writes_its_events_with_each_state_change(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    t = submit(sessions, alice, bob, 300)

    pending = events_for(sessions, t.id)
    assert [e.event_type for e in pending] == [EventType.TRANSFER_PENDING]
    assert sorted(pending[0].owner_ids) == sorted([alice.user.id, bob.user.id])
    data = pending[0].data
    assert data["status"] == "PENDING" and data["amount"] == 300 and data["reference"] == "inv 1"
    assert data["completed_at"] is None and data["updated_at"] and data["created_at"]

    with sessions.begin() as s:
        settle_transfer(s, t.id)
    events = events_for(sessions, t.id)
    by_type = {e.event_type: e for e in events}
    assert [e.event_type for e in events] == [
        EventType.TRANSFER_PENDING,
        EventType.TRANSFER_COMPLETED,
        EventType.ACCOUNT_DEBITED,
        EventType.ACCOUNT_CREDITED,
    ]
    assert sorted(by_type[EventType.TRANSFER_COMPLETED].owner_ids) == sorted([alice.user.id, bob.user.id])
    assert by_type[EventType.TRANSFER_COMPLETED].data["completed_at"] is not None
    assert by_type[EventType.ACCOUNT_DEBITED].owner_ids == [alice.user.id]
    assert by_type[EventType.ACCOUNT_DEBITED].data["account_id"] == str(alice.account.id)
    assert by_type[EventType.ACCOUNT_DEBITED].data["balance_after"] == 700
    assert by_type[EventType.ACCOUNT_CREDITED].owner_ids == [bob.user.id]
    assert by_type[EventType.ACCOUNT_CREDITED].data["balance_after"] == 300
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4

    with sessions.begin() as s:
        settle_transfer(s, t.id)  # redelivered settlement: nothing new happens, no new event
    assert len(events_for(sessions, t.id)) == 4


def test_a_failed_transfer_reports_only_transfer_failed(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    t = submit(sessions, alice, bob, 50)  # alice has nothing
    with sessions.begin() as s:
        settle_transfer(s, t.id)
    events = events_for(sessions, t.id)
    assert [e.event_type for e in events] == [EventType.TRANSFER_PENDING, EventType.TRANSFER_FAILED]
    assert events[1].data["failure_code"] == "INSUFFICIENT_FUNDS"


def test_a_deposit_reports_to_the_customer_only(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    carol = make_customer()
    fund(sessions, admin_user, carol.account, 250)
    with sessions() as s:
        t = s.scalars(select(Transfer).where(Transfer.destination_account_id == carol.account.id)).one()
    events = events_for(sessions, t.id)
    assert [e.event_type for e in events] == [EventType.TRANSFER_COMPLETED, EventType.ACCOUNT_CREDITED]
    assert all(e.owner_ids == [carol.user.id] for e in events)  # the settlement account has no owner


def test_a_rolled_back_change_leaves_no_event(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    with sessions() as s, s.begin():
        movement = MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)
        tid = submit_transfer(s, user=alice.user, idempotency_key="rolled-back", movement=movement).transfer.id
        s.flush()
        assert (
            s.scalar(select(func.count()).select_from(DomainEvent).where(DomainEvent.data["id"].astext == str(tid)))
            == 1
        )
        s.rollback()
    assert events_for(sessions, tid) == []


# ---- the relay ----------------------------------------------------------------------------


def relay_all(sessions, policy) -> None:  # type: ignore[no-untyped-def]
    while True:
        with sessions.begin() as s:
            if relay_events(s, now=datetime.now(UTC), queue_lease=policy.queue_lease).events == 0:
                return


def deliveries_of(sessions, endpoint_id: uuid.UUID) -> list[WebhookDelivery]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)))


def test_relay_fans_out_to_subscribed_enabled_endpoints_of_the_owners(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user, policy
) -> None:
    alice, bob, carol = make_customer(), make_customer(), make_customer()
    a_completed = endpoint(sessions, policy, alice, ["transfer.completed", "account.credited"])
    b_credited = endpoint(sessions, policy, bob, ["account.credited"])
    b_disabled = endpoint(sessions, policy, bob, ["account.credited"])
    c_everything = endpoint(sessions, policy, carol, [e.value for e in EventType])
    with sessions.begin() as s:
        s.get_one(WebhookEndpoint, b_disabled.id).enabled = False
    fund(sessions, admin_user, alice.account, 500)
    t = submit(sessions, alice, bob, 200)
    with sessions.begin() as s:
        settle_transfer(s, t.id)
    relay_all(sessions, policy)

    # the deposit's completed+credited, then the transfer's completed (not its debited: not subscribed)
    assert sorted(d.event_type for d in deliveries_of(sessions, a_completed.id)) == sorted(
        [EventType.TRANSFER_COMPLETED, EventType.ACCOUNT_CREDITED, EventType.TRANSFER_COMPLETED]
    )
    assert [d.event_type for d in deliveries_of(sessions, b_credited.id)] == [EventType.ACCOUNT_CREDITED]
    assert deliveries_of(sessions, b_disabled.id) == []
    assert deliveries_of(sessions, c_everything.id) == []  # carol owns neither account


@pytest.mark.commits  # relays race in threads, each on a connection of its own
def test_concurrent_relays_deliver_each_event_once_per_endpoint(sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    ep = endpoint(sessions, policy, alice, ["account.credited"])
    with sessions.begin() as s:
        for i in range(40):
            emit(s, EventType.ACCOUNT_CREDITED, {"id": str(uuid.uuid4()), "n": i}, [alice.user.id])
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            for _ in range(10):
                with sessions.begin() as s:
                    relay_events(s, now=datetime.now(UTC), queue_lease=policy.queue_lease, limit=7)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    relay_all(sessions, policy)
    assert errors == []
    got = deliveries_of(sessions, ep.id)
    assert len(got) == 40 and len({d.event_id for d in got}) == 40


# ---- one delivery attempt -----------------------------------------------------------------


def parked_delivery(sessions, policy, customer, url: str) -> tuple[WebhookEndpoint, uuid.UUID, str]:  # type: ignore[no-untyped-def]
    """An endpoint at ``url`` and one due delivery that no relay or dispatcher will touch."""
    now = datetime.now(UTC)
    with sessions.begin() as s:
        created = service.create_endpoint(
            s, customer.user, url=url, events=["transfer.completed"], description=None, policy=policy
        )
        event = DomainEvent(
            event_type=EventType.TRANSFER_COMPLETED, data={"id": "t-1"}, owner_ids=[customer.user.id], relayed_at=now
        )
        s.add(event)
        s.flush()
        d = WebhookDelivery(
            event_id=event.id,
            endpoint_id=created.endpoint.id,
            event_type=EventType.TRANSFER_COMPLETED,
            next_attempt_at=now,
            queued_until=now + timedelta(hours=1),
        )
        s.add(d)
    return created.endpoint, d.id, created.secret


def attempt(sessions, policy, delivery_id: uuid.UUID) -> tuple[delivery.Job, delivery.Outcome, Any]:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        job = delivery.claim(s, delivery_id, policy=policy, now=datetime.now(UTC))
    assert job is not None
    outcome = delivery.send(job, policy=policy, transport=HttpTransport())
    with sessions.begin() as s:
        status = delivery.record(s, job, outcome, policy=policy, now=datetime.now(UTC))
    return job, outcome, status


def test_a_successful_attempt_is_signed_and_recorded(sessions, make_customer, policy, receiver) -> None:  # type: ignore[no-untyped-def]
    url = receiver.endpoint(Reply(204))
    _, did, secret = parked_delivery(sessions, policy, make_customer(), url)
    job, outcome, status = attempt(sessions, policy, did)
    assert status == DeliveryStatus.SUCCEEDED and outcome.status_code == 204
    (req,) = receiver.requests(url)
    payload = Webhook(secret).verify(req.body, req.headers)
    assert payload["type"] == "transfer.completed" and payload["data"]["id"] == "t-1"
    assert isinstance(payload["data"]["sequence"], int) and payload["timestamp"]
    assert req.headers["Webhook-Id"] == job.msg_id and req.headers["Content-Type"] == "application/json"
    with sessions() as s:
        d = s.get_one(WebhookDelivery, did)
        assert (d.attempt, d.response_status, d.next_attempt_at) == (1, 204, None)
        (a,) = s.scalars(select(WebhookDeliveryAttempt).where(WebhookDeliveryAttempt.delivery_id == did))
        assert (a.attempt, a.status_code, a.error) == (1, 204, None) and a.duration_ms >= 0
    with sessions.begin() as s:  # a second task for the same delivery finds nothing to do
        assert delivery.claim(s, did, policy=policy, now=datetime.now(UTC)) is None


def test_an_attempt_in_flight_is_not_claimed_twice(sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    _, did, _ = parked_delivery(sessions, policy, make_customer(), NOWHERE)
    with sessions.begin() as s:
        assert delivery.claim(s, did, policy=policy, now=datetime.now(UTC)) is not None
    with sessions.begin() as s:
        assert delivery.claim(s, did, policy=policy, now=datetime.now(UTC)) is None


def test_failures_are_recorded_and_retried_later(sessions, make_customer, policy, receiver) -> None:  # type: ignore[no-untyped-def]
    url = receiver.endpoint(Reply(500), then=Reply(200))
    _, did, _ = parked_delivery(sessions, policy, make_customer(), url)
    before = datetime.now(UTC)
    _, outcome, status = attempt(sessions, policy, did)
    assert status == DeliveryStatus.PENDING and outcome.status_code == 500
    with sessions() as s:
        d = s.get_one(WebhookDelivery, did)
        assert d.response_status == 500 and d.next_attempt_at is not None
        assert d.next_attempt_at >= before + timedelta(seconds=3600)
        (a,) = s.scalars(select(WebhookDeliveryAttempt).where(WebhookDeliveryAttempt.delivery_id == did))
        assert a.status_code == 500 and a.response_body == "no"


def test_429_with_retry_after_is_honoured(sessions, make_customer, settings, receiver) -> None:  # type: ignore[no-untyped-def]
    fast = dataclasses.replace(webhook_policy(settings), schedule=(1.0,))
    url = receiver.endpoint(Reply(429, {"Retry-After": "7200"}))
    _, did, _ = parked_delivery(sessions, fast, make_customer(), url)
    before = datetime.now(UTC)
    attempt(sessions, fast, did)
    with sessions() as s:
        nxt = s.get_one(WebhookDelivery, did).next_attempt_at
    assert nxt is not None and nxt >= before + timedelta(seconds=7200)


def test_410_gone_fails_the_delivery_and_disables_the_endpoint(sessions, make_customer, policy, receiver) -> None:  # type: ignore[no-untyped-def]
    url = receiver.endpoint(Reply(410))
    ep, did, _ = parked_delivery(sessions, policy, make_customer(), url)
    _, _, status = attempt(sessions, policy, did)
    assert status == DeliveryStatus.FAILED
    with sessions() as s:
        endpoint_row = s.get_one(WebhookEndpoint, ep.id)
        assert (endpoint_row.enabled, endpoint_row.disabled_reason) == (False, "GONE")


def test_no_answer_is_a_failed_attempt_not_a_crash(sessions, make_customer, policy, receiver) -> None:  # type: ignore[no-untyped-def]
    slow = receiver.endpoint(Reply(200, delay=1.5))
    _, did, _ = parked_delivery(sessions, dataclasses.replace(policy, timeout=0.5), make_customer(), slow)
    _, outcome, status = attempt(sessions, dataclasses.replace(policy, timeout=0.5), did)
    assert (outcome.status_code, outcome.error, status) == (None, "timeout", DeliveryStatus.PENDING)

    _, did, _ = parked_delivery(sessions, policy, make_customer(), NOWHERE)
    _, outcome, _ = attempt(sessions, policy, did)
    assert outcome.status_code is None and outcome.error == "ConnectError"


def test_delivery_rechecks_the_destination(sessions, make_customer, policy, receiver) -> None:  # type: ignore[no-untyped-def]
    url = receiver.endpoint()
    _, did, _ = parked_delivery(sessions, policy, make_customer(), url)
    guarded = dataclasses.replace(policy, rules=dataclasses.replace(policy.rules, production=True))
    with sessions.begin() as s:
        job = delivery.claim(s, did, policy=guarded, now=datetime.now(UTC))
    assert job is not None
    outcome = delivery.send(job, policy=guarded, transport=HttpTransport(), resolve=lambda host, port: ["10.0.0.7"])
    assert outcome.status_code is None and outcome.error and "destination refused" in outcome.error
    assert receiver.requests(url) == []


def test_delivery_connects_to_the_address_it_checked(sessions, make_customer, policy, receiver) -> None:  # type: ignore[no-untyped-def]
    """DNS rebinding: the name is looked up once, checked, and that address is the one dialled.

    ``rebind.invalid`` resolves nowhere through system DNS: only a connection pinned to the
    checked address reaches the receiver (the Host header still carries the registered name)."""
    real = urlsplit(receiver.endpoint(Reply(204)))
    url = f"http://rebind.invalid:{real.port}{real.path}"
    _, did, _ = parked_delivery(sessions, policy, make_customer(), url)
    with sessions.begin() as s:
        job = delivery.claim(s, did, policy=policy, now=datetime.now(UTC))
    assert job is not None
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    outcome = delivery.send(job, policy=policy, transport=HttpTransport(), resolve=resolve)
    assert (outcome.status_code, outcome.error) == (204, None)
    assert lookups == ["rebind.invalid"]
    (req,) = receiver.requests(real.geturl())
    assert req.headers["Host"] == f"rebind.invalid:{real.port}"


def failed_delivery(sessions, policy, customer, url: str) -> tuple[WebhookEndpoint, uuid.UUID]:  # type: ignore[no-untyped-def]
    """A delivery whose retries are used up: FAILED, nothing queued."""
    ep, did, _ = parked_delivery(sessions, policy, customer, url)
    with sessions.begin() as s:
        d = s.get_one(WebhookDelivery, did)
        d.status, d.next_attempt_at, d.queued_until = DeliveryStatus.FAILED, None, None
    return ep, did


def test_a_manual_retry_is_queued_once_until_its_attempt_ends(client, sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    _, did = failed_delivery(sessions, policy, alice, NOWHERE)
    h = login(client, alice.email)
    answers = [client.post(f"{API}/deliveries/{did}/retry", headers=h) for _ in range(5)]
    assert [r.status_code for r in answers] == [202] * 5
    with sessions() as s:
        d = s.get_one(WebhookDelivery, did)
        retried = s.scalars(
            select(AuditLog).where(
                AuditLog.action == "webhook.delivery_retried", AuditLog.details["delivery_id"].astext == str(did)
            )
        ).all()
    assert len(retried) == 1 and d.status == DeliveryStatus.PENDING  # one queued attempt, not five
    with sessions.begin() as s:  # its attempt runs and ends: a new retry may queue another
        job = delivery.claim(s, did, policy=policy, now=datetime.now(UTC))
    assert job is not None
    assert client.post(f"{API}/deliveries/{did}/retry", headers=h).status_code == 202  # in flight: no-op
    with sessions.begin() as s:
        delivery.record(s, job, delivery.Outcome(500, 1), policy=policy, now=datetime.now(UTC))
    assert client.post(f"{API}/deliveries/{did}/retry", headers=h).status_code == 202
    with sessions() as s:
        count = s.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "webhook.delivery_retried", AuditLog.details["delivery_id"].astext == str(did))
        )
    assert count == 2


def test_manual_retries_are_rate_limited_per_user(make_app, sessions, make_customer, policy) -> None:  # type: ignore[no-untyped-def]
    client = make_app(
        rate_limit_key_prefix=f"test-{uuid.uuid4().hex}", rate_limit_webhook_retry="3 per minute"
    ).test_client()
    alice = make_customer()
    dids = [failed_delivery(sessions, policy, alice, NOWHERE)[1] for _ in range(4)]
    h = login(client, alice.email)
    codes = [client.post(f"{API}/deliveries/{did}/retry", headers=h).status_code for did in dids]
    assert codes == [202, 202, 202, 429]


@pytest.mark.commits  # the task runs on the worker's own engine
def test_a_busy_endpoint_defers_its_deliveries_and_others_flow(  # type: ignore[no-untyped-def]
    sessions, make_customer, policy, receiver, redis_client, worker_resources
) -> None:
    """A slow endpoint's slot is held: its delivery waits (no worker blocked on it) while
    another partner's is delivered; the slot holder then drains the endpoint's due deliveries."""
    from worker.webhooks import deliver

    slow_url, other_url = receiver.endpoint(Reply(204)), receiver.endpoint(Reply(204))
    slow_ep, slow_1, _ = parked_delivery(sessions, policy, make_customer(), slow_url)
    _, other, _ = parked_delivery(sessions, policy, make_customer(), other_url)
    busy = slots.acquire(redis_client, slow_ep.id, limit=1, ttl_seconds=60)
    assert busy is not None and slots.acquire(redis_client, slow_ep.id, limit=1, ttl_seconds=60) is None
    try:
        assert deliver.run(str(slow_1)) == "deferred"
        assert deliver.run(str(other)) == "SUCCEEDED"
        assert receiver.requests(slow_url) == []
        with sessions() as s:
            d = s.get_one(WebhookDelivery, slow_1)
            assert (d.attempt, d.status, d.queued_until) == (0, DeliveryStatus.PENDING, None)  # no attempt used
    finally:
        slots.release(redis_client, busy)
    with sessions.begin() as s:  # a second due delivery of the same endpoint
        event = DomainEvent(event_type=EventType.TRANSFER_COMPLETED, data={"id": "t-2"}, owner_ids=[])
        s.add(event)
        s.flush()
        s.add(
            WebhookDelivery(
                event_id=event.id,
                endpoint_id=slow_ep.id,
                event_type=EventType.TRANSFER_COMPLETED,
                next_attempt_at=datetime.now(UTC),
                queued_until=datetime.now(UTC) + timedelta(hours=1),
            )
        )
    assert deliver.run(str(slow_1)) in ("SUCCEEDED", "skipped")
    receiver.wait(slow_url, 2, timeout=10)  # both, by the one slot holder (or a running worker)


# ---- the endpoints API --------------------------------------------------------------------

API = "/api/v1/webhooks"


def test_endpoint_lifecycle_and_secret_handling(client, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    h = login(client, alice.email)
    r = client.post(f"{API}/endpoints", json={"url": NOWHERE, "events": ["transfer.completed"]}, headers=h)
    assert r.status_code == 201, r.json
    created = r.json
    assert set(created) >= {"id", "url", "events", "secret", "created_at"}
    assert created["secret"].startswith("whsec_") and created["events"] == ["transfer.completed"]
    with sessions() as s:
        stored = s.get_one(WebhookEndpoint, uuid.UUID(created["id"]))
        assert created["secret"] not in stored.secret_encrypted  # encrypted at rest

    got = client.get(f"{API}/endpoints/{created['id']}", headers=h)
    assert got.status_code == 200 and "secret" not in got.json and got.json["url"] == NOWHERE
    listed = client.get(f"{API}/endpoints", headers=h).json["items"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]

    rotated = client.post(f"{API}/endpoints/{created['id']}/rotate-secret", headers=h)
    assert rotated.status_code == 200 and rotated.json["secret"].startswith("whsec_")
    assert rotated.json["secret"] != created["secret"]
    with sessions() as s:
        stored = s.get_one(WebhookEndpoint, uuid.UUID(created["id"]))
        assert stored.previous_secret_expires_at is not None
        assert stored.previous_secret_expires_at > datetime.now(UTC) + timedelta(hours=23)

    assert client.get(f"{API}/endpoints/{created['id']}/deliveries", headers=h).json == {
        "items": [],
        "next_cursor": None,
    }
    assert client.delete(f"{API}/endpoints/{created['id']}", headers=h).status_code == 204
    assert_problem(client.get(f"{API}/endpoints/{created['id']}", headers=h), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        {"url": NOWHERE, "events": ["transfer.exploded"]},
        {"url": NOWHERE, "events": []},
        {"url": NOWHERE},
        {"url": "ftp://partner.example/x", "events": ["transfer.completed"]},
        {"url": "not a url", "events": ["transfer.completed"]},
        {"url": NOWHERE, "events": ["transfer.completed"], "secret": "whsec_mine"},
        {"url": NOWHERE, "events": "transfer.completed"},
    ],
)
def test_invalid_endpoints_are_422(client, make_customer, body) -> None:  # type: ignore[no-untyped-def]
    h = login(client, make_customer().email)
    assert_problem(client.post(f"{API}/endpoints", json=body, headers=h), 422, "VALIDATION_ERROR")


def test_another_users_endpoints_and_deliveries_are_404(client, make_customer, sessions, policy) -> None:  # type: ignore[no-untyped-def]
    alice, mallory = make_customer(), make_customer()
    ep, did, _ = parked_delivery(sessions, policy, alice, NOWHERE)
    h = login(client, mallory.email)
    for method, path in [
        ("get", f"{API}/endpoints/{ep.id}"),
        ("delete", f"{API}/endpoints/{ep.id}"),
        ("post", f"{API}/endpoints/{ep.id}/rotate-secret"),
        ("get", f"{API}/endpoints/{ep.id}/deliveries"),
        ("post", f"{API}/deliveries/{did}/retry"),
        ("post", f"{API}/deliveries/{uuid.uuid4()}/retry"),
    ]:
        assert_problem(getattr(client, method)(path, headers=h), 404, "NOT_FOUND")
    assert client.get(f"{API}/endpoints", headers=h).json == {"items": []}
    unauth = client.get(f"{API}/endpoints")
    assert_problem(unauth, 401, "UNAUTHORIZED")


# ---- the backlog exporter's measure ---------------------------------------------------------


def test_the_backlog_counts_an_event_undelivered_until_its_delivery_ends(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user, policy
) -> None:
    """An event waits in the outbox, then as a PENDING delivery: its age is measured in both."""
    from core.observability.backlog import measure

    bob = make_customer()
    endpoint(sessions, policy, bob, ["account.credited"])
    fund(sessions, admin_user, bob.account, 100)
    an_hour_later = datetime.now(UTC) + timedelta(hours=1)
    with sessions() as s:
        unrelayed = measure(s, an_hour_later)
    assert unrelayed.outbox_backlog >= 1
    assert unrelayed.oldest_undelivered_webhook_age_seconds >= 3590
    with sessions.begin() as s:
        while relay_events(s, now=datetime.now(UTC), queue_lease=policy.queue_lease, limit=1000).events:
            pass
    with sessions() as s:
        relayed = measure(s, an_hour_later)
        assert s.scalar(select(func.count()).select_from(DomainEvent).where(DomainEvent.relayed_at.is_(None))) == 0
    assert relayed.outbox_backlog == 0
    assert relayed.oldest_undelivered_webhook_age_seconds >= 3590  # its delivery is still PENDING
