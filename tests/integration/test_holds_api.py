"""Holds through the HTTP API (API.md "Holds"): a hold ends HELD and lowers the available
balance; capture and void answer 202, replay with the same key, refuse a changed body under the
key, answer TRANSFER_NOT_HELD when there is no open hold, and hide other people's transfers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.events import DomainEvent, EventType
from core.models import Account, AuditLog, Transfer
from core.reconcile import reconcile
from core.webhooks.models import WebhookDelivery
from core.webhooks.relay import relay_events
from tests.integration.test_api import assert_problem, login, post_transfer, transfer_body
from tests.settling import settle_transfer
from worker.app import create_celery
from worker.hold_expiry import expire_holds


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    from tests.factories import fund

    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    return alice, bob


def account(client, headers, account_id) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/accounts/{account_id}", headers=headers)
    assert r.status_code == 200
    return r.json  # type: ignore[no-any-return]


def action(client, headers, transfer_id, name: str, body: dict[str, Any] | None = None, key: str | None = "auto"):  # type: ignore[no-untyped-def]
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
    return client.post(f"/api/v1/transfers/{transfer_id}/{name}", json=body or {}, headers=h)


def held(client, sessions, alice, bob, amount: int = 400, **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = post_transfer(client, login(client, alice.email), transfer_body(alice, bob, amount=amount, hold=True, **over))
    assert r.status_code == 202, r.json
    assert r.json["status"] == "PENDING" and r.json["hold"] is True and r.json["hold_expires_at"]
    with sessions.begin() as s:
        assert settle_transfer(s, uuid.UUID(r.json["id"])).status.value == "HELD"
    return r.json  # type: ignore[no-any-return]


def due(sessions, transfer_id: str, ago: timedelta) -> None:  # type: ignore[no-untyped-def]
    """The hold's expiry moved to ``ago`` before now, as if it had run out."""
    with sessions.begin() as s:
        expires = datetime.now(UTC) - ago
        s.execute(update(Transfer).where(Transfer.id == uuid.UUID(transfer_id)).values(hold_expires_at=expires))


@pytest.mark.commits  # the entries list goes newest first by created_at: the capture's must be later
def test_a_hold_reserves_then_a_partial_capture_moves_part_and_releases_the_rest(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah, bh = login(client, alice.email), login(client, bob.email)
    t = held(client, sessions, alice, bob, 400)
    got = client.get(f"/api/v1/transfers/{t['id']}", headers=ah).json
    assert got["status"] == "HELD" and got["completed_at"] is None and got["captured_amount"] is None
    a = account(client, ah, alice.account.id)
    assert (a["balance"], a["available_balance"]) == (1_000, 600)

    # Available, not balance, is what other transfers may spend.
    big = post_transfer(client, ah, transfer_body(alice, bob, amount=700)).json
    with sessions.begin() as s:
        assert settle_transfer(s, uuid.UUID(big["id"])).failure_code == "INSUFFICIENT_FUNDS"

    r = action(client, ah, t["id"], "capture", {"amount": 150}, key="cap-1")
    assert r.status_code == 202, r.json
    assert r.json["status"] == "COMPLETED" and r.json["captured_amount"] == 150 and r.json["completed_at"]
    a, b = account(client, ah, alice.account.id), account(client, bh, bob.account.id)
    assert (a["balance"], a["available_balance"]) == (850, 850)
    assert (b["balance"], b["available_balance"]) == (150, 150)
    entries = client.get(f"/api/v1/accounts/{alice.account.id}/entries", headers=ah).json["items"]
    assert (entries[0]["amount"], entries[0]["balance_after"]) == (-150, 850)

    again = action(client, ah, t["id"], "capture", {"amount": 150}, key="cap-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == t["id"] and again.json["captured_amount"] == 150
    assert account(client, ah, alice.account.id)["balance"] == 850  # the replay moved nothing
    assert_problem(action(client, ah, t["id"], "capture", {"amount": 151}, key="cap-1"), 422, "IDEMPOTENCY_KEY_REUSED")
    assert_problem(action(client, ah, t["id"], "capture"), 409, "TRANSFER_NOT_HELD")
    assert_problem(action(client, ah, t["id"], "void"), 409, "TRANSFER_NOT_HELD")

    with sessions() as s:
        types = set(s.scalars(select(DomainEvent.event_type).where(DomainEvent.data["id"].astext == t["id"])))
    assert {EventType.TRANSFER_HELD, EventType.TRANSFER_COMPLETED, EventType.ACCOUNT_DEBITED} <= types


def test_void_releases_and_either_owner_may_void(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah, bh = login(client, alice.email), login(client, bob.email)
    t = held(client, sessions, alice, bob, 300)
    assert account(client, ah, alice.account.id)["available_balance"] == 700
    r = action(client, bh, t["id"], "void", key="void-1")  # the destination's owner
    assert r.status_code == 202 and r.json["status"] == "VOIDED" and r.json["completed_at"]
    a = account(client, ah, alice.account.id)
    assert (a["balance"], a["available_balance"]) == (1_000, 1_000)
    replay = action(client, bh, t["id"], "void", key="void-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert_problem(action(client, ah, t["id"], "capture"), 409, "TRANSFER_NOT_HELD")
    t2 = held(client, sessions, alice, bob, 100)
    bare = client.post(f"/api/v1/transfers/{t2['id']}/void", headers={**ah, "Idempotency-Key": "no-body"})
    assert bare.status_code == 202, bare.json  # the source's owner, and no body at all
    t3 = held(client, sessions, alice, bob, 100)
    bare = client.post(f"/api/v1/transfers/{t3['id']}/capture", headers={**ah, "Idempotency-Key": "no-body-c"})
    assert bare.status_code == 202 and bare.json["captured_amount"] == 100, bare.json


def test_a_pending_or_plain_transfer_is_not_held(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah = login(client, alice.email)
    pending = post_transfer(client, ah, transfer_body(alice, bob, hold=True)).json
    assert_problem(action(client, ah, pending["id"], "capture"), 409, "TRANSFER_NOT_HELD")
    assert_problem(action(client, ah, pending["id"], "void"), 409, "TRANSFER_NOT_HELD")
    plain = post_transfer(client, ah, transfer_body(alice, bob)).json
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(plain["id"]))
    assert_problem(action(client, ah, plain["id"], "capture"), 409, "TRANSFER_NOT_HELD")
    # A refused request binds no key: the same key works once the hold is open.
    assert_problem(action(client, ah, pending["id"], "capture", key="early"), 409, "TRANSFER_NOT_HELD")
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(pending["id"]))
    assert action(client, ah, pending["id"], "capture", key="early").status_code == 202


def test_not_held_is_answered_before_the_amount(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah = login(client, alice.email)
    plain = post_transfer(client, ah, transfer_body(alice, bob, amount=100)).json
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(plain["id"]))
    assert_problem(action(client, ah, plain["id"], "capture", {"amount": 500}), 409, "TRANSFER_NOT_HELD")


@pytest.mark.commits  # the sweep runs in the worker's own sessions
def test_a_hold_past_its_expiry_is_not_held_before_the_sweep_ends_it(client, sessions, pair, worker_resources) -> None:  # type: ignore[no-untyped-def]
    """API.md: a hold not captured by its expiry ends EXPIRED. Between the expiry and the sweep
    (every HOLD_EXPIRY_INTERVAL_SECONDS) neither capture nor void may end it otherwise."""
    alice, bob = pair
    ah, bh = login(client, alice.email), login(client, bob.email)
    t = held(client, sessions, alice, bob, 300)
    due(sessions, t["id"], timedelta(milliseconds=300))
    assert_problem(action(client, ah, t["id"], "capture"), 409, "TRANSFER_NOT_HELD")
    assert_problem(action(client, ah, t["id"], "capture", {"amount": 100}), 409, "TRANSFER_NOT_HELD")
    assert_problem(action(client, bh, t["id"], "void"), 409, "TRANSFER_NOT_HELD")
    assert account(client, bh, bob.account.id)["balance"] == 0
    with sessions() as s:
        assert s.get_one(Transfer, uuid.UUID(t["id"])).status.value == "HELD"  # the sweep's to end
    assert expire_holds() >= 1
    got = client.get(f"/api/v1/transfers/{t['id']}", headers=ah).json
    assert got["status"] == "EXPIRED" and got["captured_amount"] is None
    a = account(client, ah, alice.account.id)
    assert (a["balance"], a["available_balance"]) == (1_000, 1_000)


def test_ownership_capture_and_void(client, sessions, pair, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    mallory = make_customer()
    mh, bh = login(client, mallory.email), login(client, bob.email)
    t = held(client, sessions, alice, bob, 200)
    assert_problem(action(client, mh, t["id"], "capture"), 404, "NOT_FOUND")
    assert_problem(action(client, mh, t["id"], "void"), 404, "NOT_FOUND")
    assert_problem(action(client, mh, uuid.uuid4(), "capture"), 404, "NOT_FOUND")
    assert_problem(action(client, bh, t["id"], "capture"), 403, "FORBIDDEN")  # the payee cannot take the money
    with sessions() as s:
        assert s.get_one(Transfer, uuid.UUID(t["id"])).status.value == "HELD"
    r = action(client, login(client, admin_user.email), t["id"], "capture")
    assert r.status_code == 202 and r.json["captured_amount"] == 200


def test_capture_input_is_checked(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah = login(client, alice.email)
    t = held(client, sessions, alice, bob, 200)
    body = assert_problem(action(client, ah, t["id"], "capture", {"amount": 201}), 422, "VALIDATION_ERROR")
    assert "amount" in body["errors"]
    for bad in ({"amount": 0}, {"amount": 1.5}, {"amount": "10"}, {"amount": True}, {"other": 1}):
        assert_problem(action(client, ah, t["id"], "capture", bad), 422, "VALIDATION_ERROR")
    assert_problem(action(client, ah, t["id"], "void", {"amount": 1}), 422, "VALIDATION_ERROR")
    assert_problem(action(client, ah, t["id"], "capture", key=None), 400, "IDEMPOTENCY_KEY_REQUIRED")
    assert_problem(action(client, ah, t["id"], "void", key=None), 400, "IDEMPOTENCY_KEY_REQUIRED")
    # A key bound to one hold's capture is not reusable for another request.
    assert action(client, ah, t["id"], "capture", {"amount": 50}, key="k").status_code == 202
    t2 = held(client, sessions, alice, bob, 100)
    assert_problem(action(client, ah, t2["id"], "capture", {"amount": 50}, key="k"), 422, "IDEMPOTENCY_KEY_REUSED")


@pytest.mark.parametrize(
    "over",
    [
        {"hold_expires_in_seconds": 3600},  # without hold
        {"hold": True, "hold_expires_in_seconds": 59},
        {"hold": True, "hold_expires_in_seconds": 604_801},
        {"hold": True, "hold_expires_in_seconds": 120.5},
        {"hold": True, "hold_expires_in_seconds": True},
        {"hold": "yes"},
        {"hold": 1},
    ],
)
def test_hold_fields_are_validated(client, pair, over) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    body = assert_problem(
        post_transfer(client, login(client, alice.email), transfer_body(alice, bob, **over)), 422, "VALIDATION_ERROR"
    )
    assert set(body["errors"]) & set(over)


def test_hold_fields_are_part_of_the_idempotency_hash(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah = login(client, alice.email)
    first = post_transfer(client, ah, transfer_body(alice, bob, hold=True, hold_expires_in_seconds=600), key="h")
    assert first.status_code == 202
    expires = first.json["hold_expires_at"]
    replay = post_transfer(client, ah, transfer_body(alice, bob, hold=True, hold_expires_in_seconds=600), key="h")
    assert replay.status_code == 200 and replay.json["hold_expires_at"] == expires
    for other in ({"hold": True, "hold_expires_in_seconds": 601}, {"hold": True}, {}):
        assert_problem(
            post_transfer(client, ah, transfer_body(alice, bob, **other), key="h"), 422, "IDEMPOTENCY_KEY_REUSED"
        )
    plain = post_transfer(client, ah, transfer_body(alice, bob), key="p")
    assert plain.json["hold"] is False and plain.json["hold_expires_at"] is None
    assert post_transfer(client, ah, transfer_body(alice, bob, hold=False), key="p").status_code == 200


def test_hold_events_can_be_subscribed(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, _ = pair
    events = ["transfer.held", "transfer.voided", "transfer.expired", "transfer.completed"]
    r = client.post(
        "/api/v1/webhooks/endpoints",
        json={"url": "http://127.0.0.1:9/hook", "events": events},
        headers=login(client, alice.email),
    )
    assert r.status_code == 201, r.json
    assert r.json["events"] == events


def test_openapi_documents_capture_and_void(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json
    paths = spec["paths"]
    capture = paths["/api/v1/transfers/{transfer_id}/capture"]["post"]
    assert {"202", "200", "409"} <= set(capture["responses"])
    assert "/api/v1/transfers/{transfer_id}/void" in paths
    transfer_in = spec["components"]["schemas"]["TransferIn"]
    assert {"hold", "hold_expires_in_seconds"} <= set(transfer_in["properties"])


def test_capture_needs_active_accounts_but_void_does_not(client, sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah, admin_h = login(client, alice.email), login(client, admin_user.email)
    t = held(client, sessions, alice, bob, 200)
    assert (
        client.post(
            f"/api/v1/admin/accounts/{bob.account.id}/freeze", json={"reason": "t"}, headers=admin_h
        ).status_code
        == 200
    )
    # The payee's frozen account answers as POST /transfers does (tests/integration/test_request_bodies.py).
    assert_problem(action(client, ah, t["id"], "capture", key="c"), 404, "NOT_FOUND")
    assert action(client, ah, t["id"], "void", key="c").status_code == 202  # the refused capture bound nothing
    assert account(client, ah, alice.account.id)["available_balance"] == 1_000


@pytest.mark.commits  # the expiry beat task runs on the worker's own engine
def test_hold_events_reach_both_owners(client, sessions, pair, worker_resources) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ah = login(client, alice.email)
    hold_events = ["transfer.held", "transfer.voided", "transfer.expired"]
    endpoints = {
        client.post(
            "/api/v1/webhooks/endpoints",
            json={"url": "http://127.0.0.1:9/discard", "events": hold_events},
            headers=login(client, who.email),
        ).json["id"]
        for who in (alice, bob)
    }
    voided = held(client, sessions, alice, bob, 100)
    action(client, ah, voided["id"], "void")
    expired = held(client, sessions, alice, bob, 100)
    due(sessions, expired["id"], timedelta(seconds=1))
    assert expire_holds() >= 1  # the beat task, run in this process
    both = sorted([alice.user.id, bob.user.id])
    with sessions() as s:
        for tid, kinds in (
            (voided["id"], [EventType.TRANSFER_PENDING, EventType.TRANSFER_HELD, EventType.TRANSFER_VOIDED]),
            (expired["id"], [EventType.TRANSFER_PENDING, EventType.TRANSFER_HELD, EventType.TRANSFER_EXPIRED]),
        ):
            events = list(
                s.scalars(
                    select(DomainEvent).where(DomainEvent.data["id"].astext == tid).order_by(DomainEvent.sequence)
                )
            )
            assert [e.event_type for e in events] == kinds
            assert all(sorted(e.owner_ids) == both for e in events)
            assert events[-1].data["status"] == kinds[-1].value.split(".")[1].upper()
            actions = list(s.scalars(select(AuditLog.action).where(AuditLog.entity_id == tid)))
            assert kinds[-1].value in actions  # transfer.voided / transfer.expired
    for _ in range(1_000):  # the relay fans them out to both owners' endpoints (oldest events first)
        with sessions.begin() as s:
            if relay_events(s, now=datetime.now(UTC), queue_lease=timedelta(seconds=5), limit=500).events == 0:
                break
    with sessions() as s:
        delivered = s.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.event_type).where(
                WebhookDelivery.endpoint_id.in_([uuid.UUID(e) for e in endpoints])
            )
        ).all()
    for endpoint in endpoints:
        got = sorted(t.value for e, t in delivered if str(e) == endpoint)
        assert got == sorted(["transfer.held", "transfer.held", "transfer.voided", "transfer.expired"])


def test_expiry_is_scheduled_by_beat(settings) -> None:  # type: ignore[no-untyped-def]
    schedule = create_celery(settings, set_as_current=False).conf.beat_schedule["expire-holds"]
    assert schedule["task"] == expire_holds.name


def test_reconcile_spots_a_held_total_that_is_not_the_open_holds(sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, _ = pair
    with sessions.begin() as s:
        assert reconcile(s).ok
        s.execute(update(Account).where(Account.id == alice.account.id).values(held_amount=Account.held_amount + 1))
        problems = reconcile(s).problems
        s.rollback()
    assert any(f"account {alice.account.id}: held 1 != sum of its HELD transfers 0" in p for p in problems)
