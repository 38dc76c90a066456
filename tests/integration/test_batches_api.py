"""POST /transfers/batch through the Flask app in-process, against real Postgres/Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import Transfer, TransferBatch
from tests.factories import PIN, fund
from tests.integration.test_api import assert_problem, login, post_transfer, transfer_body

URL = "/api/v1/transfers/batch"


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    return alice, bob


def item(src, dst, amount: int = 100, key: str | None = None, **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {
        "idempotency_key": key or str(uuid.uuid4()),
        "source_account_id": str(src.account.id),
        "destination_account_id": str(dst.account.id),
        "amount": amount,
        "currency": "USD",
    }
    body.update(over)
    return body


def post_batch(client, headers, items, *, atomic: bool = False, pin: str = PIN):  # type: ignore[no-untyped-def]
    return client.post(URL, json={"pin": pin, "atomic": atomic, "items": items}, headers=headers)


def bound(sessions, keys: list[str]) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(select(func.count()).where(Transfer.idempotency_key.in_(keys))) or 0


def test_each_item_gets_its_own_result_in_request_order(client, pair, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    mallory = make_customer()
    h = login(client, alice.email)
    first = item(alice, bob, 100)
    items = [
        first,
        item(alice, bob, 0),  # validation
        item(mallory, bob, 5),  # someone else's source: 404, as for POST /transfers
        item(alice, alice, 5),  # same account
        item(alice, bob, 5, currency="EUR"),  # currency mismatch
        item(alice, bob, 7, hold=True),
        {k: v for k, v in item(alice, bob, 5).items() if k != "idempotency_key"},  # no key
        dict(first),  # the same key and body again: a replay of the first item
        {**first, "amount": 101},  # the same key, another body
        item(alice, bob, 5, reference="x" * 141),
    ]
    r = post_batch(client, h, items)
    assert r.status_code == 200, r.json
    got = r.json["items"]
    assert [i["status"] for i in got] == [202, 422, 404, 422, 422, 202, 400, 200, 422, 422]
    codes = [i.get("error", {}).get("code") for i in got]
    assert codes == [
        None,
        "VALIDATION_ERROR",
        "NOT_FOUND",
        "SAME_ACCOUNT",
        "CURRENCY_MISMATCH",
        None,
        "IDEMPOTENCY_KEY_REQUIRED",
        None,
        "IDEMPOTENCY_KEY_REUSED",
        "VALIDATION_ERROR",
    ]
    assert list(got[1]["error"]["errors"]) == ["amount"]
    assert all(set(i["error"]) >= {"type", "title", "status", "code", "detail"} for i in got if "error" in i)
    accepted, held, replay = got[0]["transfer"], got[5]["transfer"], got[7]["transfer"]
    assert accepted["status"] == "PENDING" and accepted["amount"] == 100 and accepted["hold"] is False
    assert replay == accepted
    assert accepted["batch_id"] and held["batch_id"] == accepted["batch_id"]
    assert held["hold"] is True
    expires = datetime.fromisoformat(held["hold_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=1)
    # Invalid items bound nothing: their keys are free for a valid request.
    assert bound(sessions, [i["idempotency_key"] for i in items[1:5]]) == 0
    again = post_batch(client, h, [{**items[1], "amount": 5}])
    assert again.json["items"][0]["status"] == 202
    with sessions() as s:
        batch = s.get_one(TransferBatch, uuid.UUID(accepted["batch_id"]))
        assert (batch.user_id, batch.atomic, batch.item_count) == (alice.user.id, False, 2)


def test_a_batch_sent_again_replays_every_item(client, pair, sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    items = [item(alice, bob, n) for n in (1, 2, 3)]
    first = post_batch(client, h, items).json["items"]
    assert [i["status"] for i in first] == [202, 202, 202]
    second = post_batch(client, h, items).json["items"]
    assert [i["status"] for i in second] == [200, 200, 200]
    assert [i["transfer"]["id"] for i in second] == [i["transfer"]["id"] for i in first]
    # A key of an earlier batch with another body, and a key bound by POST /transfers, replayed here.
    single = post_transfer(client, h, transfer_body(alice, bob, amount=9, reference=None), key="single-key")
    assert single.status_code == 202
    mixed = post_batch(
        client, h, [{**items[0], "amount": 50}, item(alice, bob, 9, key="single-key"), item(alice, bob, 4)]
    ).json["items"]
    assert [i["status"] for i in mixed] == [422, 200, 202]
    assert mixed[0]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert mixed[1]["transfer"]["id"] == single.json["id"]
    assert bound(sessions, [i["idempotency_key"] for i in items]) == 3


def test_an_atomic_batch_with_an_invalid_item_is_refused_whole(client, pair, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    mallory = make_customer()
    h = login(client, alice.email)
    items = [item(alice, bob, 1), item(mallory, bob, 1), item(alice, bob, 2)]
    r = post_batch(client, h, items, atomic=True)
    body = assert_problem(r, 422, "VALIDATION_ERROR")
    assert [i["status"] for i in body["items"]] == [424, 404, 424]
    assert [i["error"]["code"] for i in body["items"]] == ["LINKED_FAILED", "NOT_FOUND", "LINKED_FAILED"]
    assert bound(sessions, [i["idempotency_key"] for i in items]) == 0
    ok = post_batch(client, h, [items[0], items[2]], atomic=True)
    assert ok.status_code == 200 and [i["status"] for i in ok.json["items"]] == [202, 202]
    assert post_batch(client, h, [items[0], items[2]], atomic=True).json["items"][0]["status"] == 200
    # New items cannot be linked to transfers accepted before: refused, nothing bound.
    late = item(alice, bob, 3)
    mix = post_batch(client, h, [items[0], late], atomic=True)
    assert [i["status"] for i in assert_problem(mix, 422, "VALIDATION_ERROR")["items"]] == [409, 424]
    assert bound(sessions, [late["idempotency_key"]]) == 0
    with sessions() as s:
        batch_ids = set(s.scalars(select(Transfer.batch_id).where(Transfer.initiated_by == alice.user.id)))
        assert len(batch_ids) == 1
        assert s.get_one(TransferBatch, batch_ids.pop()).atomic is True


def test_whole_request_errors(client, pair, sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    big = [item(alice, bob, 1, key=f"k{n}") for n in range(1001)]
    assert_problem(post_batch(client, h, big), 422, "VALIDATION_ERROR")
    assert bound(sessions, ["k0", "k1000"]) == 0
    assert_problem(client.post(URL, json={"pin": PIN}, headers=h), 422, "VALIDATION_ERROR")
    assert_problem(post_batch(client, h, []), 422, "VALIDATION_ERROR")
    assert_problem(post_batch(client, h, ["not an object"]), 422, "VALIDATION_ERROR")
    assert_problem(client.post(URL, json={"items": [item(alice, bob)]}, headers=h), 422, "VALIDATION_ERROR")
    assert_problem(client.post(URL, data="{", headers={**h, "Content-Type": "application/json"}), 400, "BAD_REQUEST")
    assert client.post(URL, json={"pin": PIN, "items": [item(alice, bob)]}).status_code == 401
    # 1,000 items is allowed (past the default body limit), in one transaction.
    full = post_batch(client, h, [item(alice, bob, 1) for _ in range(1000)])
    assert full.status_code == 200
    assert {i["status"] for i in full.json["items"]} == {202}


def test_pin_errors_refuse_the_whole_batch_and_bind_nothing(client, pair, sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    items = [item(alice, bob, 1), item(alice, bob, 2)]
    codes = [post_batch(client, h, items, pin="0000").status_code for _ in range(5)]
    assert codes == [403, 403, 403, 403, 423]
    assert_problem(post_batch(client, h, items), 423, "PIN_LOCKED")
    assert bound(sessions, [i["idempotency_key"] for i in items]) == 0


def test_openapi_documents_the_batch_endpoint(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json
    post = spec["paths"]["/api/v1/transfers/batch"]["post"]
    assert post["security"] == [{"bearerAuth": []}] and "200" in post["responses"]
    schemas = spec["components"]["schemas"]
    body = schemas["BatchIn"]["properties"]
    assert body["items"]["maxItems"] == 1000 and body["items"]["items"] == {"$ref": "#/components/schemas/BatchItemIn"}
    assert set(schemas["BatchItemIn"]["properties"]) >= {"idempotency_key", "source_account_id", "hold"}
    assert "pin" in schemas["BatchIn"]["required"]


def test_kyc_is_checked_before_the_pin(client, pair, make_customer) -> None:  # type: ignore[no-untyped-def]
    """As for POST /transfers: an unapproved customer hears about KYC, with no PIN set or a wrong one."""
    _, bob = pair
    for newcomer in (make_customer(approved=False, pin=None), make_customer(approved=False)):
        r = post_batch(client, login(client, newcomer.email), [item(newcomer, bob)], pin="0000")
        assert_problem(r, 403, "KYC_NOT_APPROVED")
