"""Balance monitors (API.md "Spend controls"): balance.monitor_triggered fires once per crossing of
the condition, from the transaction that moved the balance (settlement, capture, void, expiry,
deposit), never for a change that rolled back; at most 20 monitors per account."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.accounts import limit_settings, monitors
from core.events import DomainEvent, EventType
from core.models import Transfer, TransferStatus
from core.transfers import holds
from core.transfers.batch import BatchItem, accept_batch, prepare_batch
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer


def monitor(sessions, customer, field: str, op: str, value: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return monitors.create(  # type: ignore[no-any-return]
            s,
            customer.account.id,
            customer.user,
            field=field,
            operator=op,
            value=value,
            description=None,
            request_id=None,
        ).id


def pay(sessions, customer, destination, amount: int, *, hold: bool = False) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        tid = submit_transfer(
            s,
            user=customer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(customer.account.id, destination.account.id, amount, "USD", None, hold=hold),
        ).transfer.id
    with sessions.begin() as s:
        settle_transfer(s, tid)
    return tid  # type: ignore[no-any-return]


def fired(sessions, monitor_id) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        rows = s.scalars(
            select(DomainEvent)
            .where(
                DomainEvent.event_type == EventType.BALANCE_MONITOR_TRIGGERED,
                DomainEvent.data["monitor"]["id"].astext == str(monitor_id),
            )
            .order_by(DomainEvent.sequence)
        ).all()
        return [{"data": r.data, "owners": r.owner_ids} for r in rows]


def test_a_balance_monitor_fires_once_per_crossing(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 500)
    m = monitor(sessions, alice, "balance", "lt", 100)
    pay(sessions, alice, bob, 300)  # 200: not below 100
    crossing = pay(sessions, alice, bob, 150)  # 50: crosses
    pay(sessions, alice, bob, 10)  # 40: still below, no new event
    fund(sessions, admin_user, alice.account, 200)  # 240: back above
    again = pay(sessions, alice, bob, 200)  # 40: crosses again
    events = fired(sessions, m)
    assert [e["data"]["transfer_id"] for e in events] == [str(crossing), str(again)]
    first = events[0]
    assert first["owners"] == [alice.user.id]
    assert first["data"]["account"] == {
        "id": str(alice.account.id),
        "user_id": str(alice.user.id),
        "currency": "USD",
        "balance": 50,
        "available_balance": 50,
    }
    assert first["data"]["monitor"]["id"] == str(m) and first["data"]["monitor"]["last_triggered_at"]
    assert {k: first["data"]["monitor"][k] for k in ("field", "operator", "value")} == {
        "field": "balance",
        "operator": "lt",
        "value": 100,
    }


def test_available_balance_monitors_see_holds_and_their_ends(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    low = monitor(sessions, alice, "available_balance", "lte", 500)
    high = monitor(sessions, alice, "available_balance", "gt", 800)
    received = monitor(sessions, bob, "balance", "gte", 300)
    hold = pay(sessions, alice, bob, 600, hold=True)  # available 400: low crosses
    assert [e["data"]["transfer_id"] for e in fired(sessions, low)] == [str(hold)]
    with sessions.begin() as s:
        holds.void(s, user=alice.user, transfer_id=hold, idempotency_key=str(uuid.uuid4()))  # 1000: high crosses
    assert [e["data"]["transfer_id"] for e in fired(sessions, high)] == [str(hold)]
    captured = pay(sessions, alice, bob, 700, hold=True)  # available 300: low crosses again
    with sessions.begin() as s:
        holds.capture(s, user=alice.user, transfer_id=captured, amount=350, idempotency_key=str(uuid.uuid4()))
    # the capture gives 350 back to alice's available balance (650, low no longer met) and moves
    # 350 to bob (received crosses, from the capture)
    assert [e["data"]["transfer_id"] for e in fired(sessions, received)] == [str(captured)]
    expiring = pay(sessions, alice, bob, 200, hold=True)  # 450: low crosses a third time
    assert len(fired(sessions, low)) == 3
    with sessions.begin() as s:
        s.execute(
            update(Transfer).where(Transfer.id == expiring).values(hold_expires_at=datetime.now(UTC) - timedelta(1))
        )
        holds.expire_due(s, now=datetime.now(UTC))
    with sessions.begin() as s:
        assert s.get_one(Transfer, expiring).status == TransferStatus.EXPIRED
    assert len(fired(sessions, low)) == 3 and len(fired(sessions, high)) == 1  # 650: neither crossed


def test_a_credit_line_counts_in_the_available_balance(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    m = monitor(sessions, alice, "available_balance", "gte", 1_000)
    with sessions.begin() as s:
        limit_settings.set_bank_limits(
            s, alice.account.id, {"credit_limit": 900}, admin_id=admin_user.id, reason="t", request_id=None
        )
    fund(sessions, admin_user, alice.account, 100)  # 100 + 900 of credit: crosses, from a deposit
    assert len(fired(sessions, m)) == 1


def test_no_event_for_a_change_that_rolled_back_or_an_atomic_batch_that_failed(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 500)
    m = monitor(sessions, alice, "balance", "lt", 300)
    with sessions.begin() as s:
        tid = submit_transfer(
            s,
            user=alice.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(alice.account.id, bob.account.id, 400, "USD", None),
        ).transfer.id
    with pytest.raises(RuntimeError), sessions.begin() as s:
        settle_transfer(s, tid)
        raise RuntimeError("the settling transaction fails after the decision")
    assert fired(sessions, m) == []
    items = [
        BatchItem(str(uuid.uuid4()), MoneyMovement(alice.account.id, bob.account.id, amount, "USD", None))
        for amount in (300, 300)
    ]
    with sessions.begin() as s:
        result = accept_batch(s, prepare_batch(s, alice.user, items), user=alice.user, atomic=True)
    with sessions.begin() as s:
        settle_transfer(s, result.items[0].transfer.id)  # type: ignore[union-attr]
    assert fired(sessions, m) == []  # the first item crossed in the plan, but the batch failed whole
    with sessions.begin() as s:
        settle_transfer(s, tid)
    assert [e["data"]["transfer_id"] for e in fired(sessions, m)] == [str(tid)]


# ---- API ----------------------------------------------------------------------------------


def test_monitors_over_the_api(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    h = login(client, alice.email)
    url = f"/api/v1/accounts/{alice.account.id}/monitors"
    r = client.post(
        url, json={"field": "balance", "operator": "lt", "value": -50, "description": "overdrawn"}, headers=h
    )
    assert r.status_code == 201, r.json
    created = r.json
    assert {
        k: created[k] for k in ("account_id", "field", "operator", "value", "description", "last_triggered_at")
    } == {
        "account_id": str(alice.account.id),
        "field": "balance",
        "operator": "lt",
        "value": -50,
        "description": "overdrawn",
        "last_triggered_at": None,
    }
    assert client.get(url, headers=h).json == {"items": [created]}
    for body, field in (
        ({"field": "balance_after", "operator": "lt", "value": 1}, "field"),
        ({"field": "balance", "operator": "eq", "value": 1}, "operator"),
        ({"field": "balance", "operator": "lt", "value": 1.5}, "value"),
        ({"field": "balance", "operator": "lt", "value": 2**53}, "value"),
        ({"field": "balance", "operator": "lt"}, "value"),
        ({"field": "balance", "operator": "lt", "value": 1, "colour": "red"}, "colour"),
    ):
        assert field in assert_problem(client.post(url, json=body, headers=h), 422, "VALIDATION_ERROR")["errors"]
    for n in range(19):
        assert (
            client.post(url, json={"field": "available_balance", "operator": "gte", "value": n}, headers=h).status_code
            == 201
        )
    assert_problem(
        client.post(url, json={"field": "balance", "operator": "gt", "value": 0}, headers=h), 422, "VALIDATION_ERROR"
    )
    bob_h = login(client, bob.email)
    assert_problem(client.get(url, headers=bob_h), 404, "NOT_FOUND")
    assert_problem(
        client.post(url, json={"field": "balance", "operator": "gt", "value": 0}, headers=bob_h), 404, "NOT_FOUND"
    )
    assert_problem(client.delete(f"{url}/{created['id']}", headers=bob_h), 404, "NOT_FOUND")
    assert client.delete(f"{url}/{created['id']}", headers=h).status_code == 204
    assert_problem(client.delete(f"{url}/{created['id']}", headers=h), 404, "NOT_FOUND")
    assert len(client.get(url, headers=h).json["items"]) == 19
