"""POST /transfers/{id}/refunds: ownership, validation, replay, the cap under concurrency, settlement."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from core.accounts.service import set_frozen
from core.models import AuditLog, Transfer, TransferKind, TransferStatus
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer


def pay(sessions, payer, payee_account, amount: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A transfer accepted and settled (COMPLETED) by the same services the API and workers use."""
    with sessions.begin() as s:
        transfer = submit_transfer(
            s,
            user=payer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(payer.account.id, payee_account.id, amount, "USD", "goods"),
        ).transfer
    settle(sessions, transfer.id)
    return transfer.id  # type: ignore[no-any-return]


def settle(sessions, transfer_id: uuid.UUID):  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return settle_transfer(s, transfer_id)


def refund(client, headers, transfer_id, body: dict[str, Any] | None = None, key: str | None = "auto"):  # type: ignore[no-untyped-def]
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
    return client.post(f"/api/v1/transfers/{transfer_id}/refunds", json=body or {}, headers=h)


@pytest.fixture
def paid(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    """alice paid bob 1,000; alice has 9,000 left."""
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    return alice, bob, pay(sessions, alice, bob.account, 1000)


def test_refund_is_a_transfer_back_linked_to_the_original(client, sessions, paid) -> None:  # type: ignore[no-untyped-def]
    alice, bob, original = paid
    r = refund(client, login(client, bob.email), original, {"amount": 400, "reason": "damaged"})
    assert r.status_code == 202, r.json
    body = r.json
    assert r.headers["Location"] == f"/api/v1/transfers/{body['id']}"
    assert body["kind"] == "REFUND" and body["refund_of"] == str(original) and body["status"] == "PENDING"
    assert body["source_account_id"] == str(bob.account.id)
    assert body["destination_account_id"] == str(alice.account.id)
    assert (body["amount"], body["currency"], body["reference"]) == (400, "USD", "damaged")
    # The payer sees it too, and the existing settlement moves the money back.
    assert client.get(r.headers["Location"], headers=login(client, alice.email)).json["kind"] == "REFUND"
    assert settle(sessions, uuid.UUID(body["id"])).status == TransferStatus.COMPLETED
    assert balance(sessions, alice.account.id) == 9_400 and balance(sessions, bob.account.id) == 600
    with sessions() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.entity_id == body["id"]).order_by(AuditLog.id)).first()
    assert row is not None and row.action == "refund.requested" and row.actor_id == bob.user.id
    assert row.details == {"refund_of": str(original), "amount": 400, "currency": "USD", "reason": "damaged"}


def test_default_amount_is_what_is_still_refundable(client, paid) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    h = login(client, bob.email)
    assert refund(client, h, original, {"amount": 250}).status_code == 202
    rest = refund(client, h, original)
    assert rest.status_code == 202 and rest.json["amount"] == 750
    problem = assert_problem(refund(client, h, original), 422, "REFUND_EXCEEDS_AMOUNT")
    assert problem["refundable"] == 0
    assert_problem(refund(client, h, original, {"amount": 1}), 422, "REFUND_EXCEEDS_AMOUNT")


def test_more_than_the_amount_is_refused(client, paid) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    body = assert_problem(
        refund(client, login(client, bob.email), original, {"amount": 1001}), 422, "REFUND_EXCEEDS_AMOUNT"
    )
    assert body["refundable"] == 1000


def test_replay_returns_the_same_refund_and_another_body_is_refused(client, paid) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    h, key = login(client, bob.email), str(uuid.uuid4())
    first = refund(client, h, original, {"amount": 100, "reason": "r"}, key=key)
    again = refund(client, h, original, {"amount": 100, "reason": "r"}, key=key)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"] and again.headers["Location"] == first.headers["Location"]
    assert_problem(refund(client, h, original, {"amount": 101, "reason": "r"}, key=key), 422, "IDEMPOTENCY_KEY_REUSED")
    # An omitted amount replays as itself, even once nothing is refundable any more.
    full_key = str(uuid.uuid4())
    rest = refund(client, h, original, key=full_key)
    assert rest.status_code == 202 and rest.json["amount"] == 900
    replay = refund(client, h, original, key=full_key)
    assert replay.status_code == 200 and replay.json["id"] == rest.json["id"]


def test_a_key_bound_to_a_transfer_cannot_be_reused_for_a_refund(client, paid, sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    key = str(uuid.uuid4())
    with sessions.begin() as s:
        submit_transfer(
            s,
            user=bob.user,
            idempotency_key=key,
            movement=MoneyMovement(bob.account.id, make_customer().account.id, 5, "USD", None),
        )
    assert_problem(
        refund(client, login(client, bob.email), original, {"amount": 5}, key=key), 422, "IDEMPOTENCY_KEY_REUSED"
    )


def test_who_may_refund(client, paid, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, _, original = paid
    stranger = make_customer()
    assert_problem(refund(client, login(client, stranger.email), original, {"amount": 1}), 404, "NOT_FOUND")
    assert_problem(refund(client, login(client, stranger.email), uuid.uuid4(), {"amount": 1}), 404, "NOT_FOUND")
    # The payer sees the transfer, so nothing to hide: only the payee (or an admin) refunds.
    assert_problem(refund(client, login(client, alice.email), original, {"amount": 1}), 403, "FORBIDDEN")
    by_admin = refund(client, login(client, admin_user.email), original, {"amount": 1})
    assert by_admin.status_code == 202 and by_admin.json["kind"] == "REFUND"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": "10"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 2**53}, "amount"),
        ({"reason": "x" * 141}, "reason"),
        ({"reason": 7}, "reason"),
        ({"pin": "1234"}, "pin"),
    ],
)
def test_invalid_bodies_are_422(client, paid, body, field) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    problem = assert_problem(refund(client, login(client, bob.email), original, body), 422, "VALIDATION_ERROR")
    assert field in problem["errors"]


def test_key_required(client, paid) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    assert_problem(
        refund(client, login(client, bob.email), original, {"amount": 1}, key=None), 400, "IDEMPOTENCY_KEY_REQUIRED"
    )


def test_only_a_completed_transfer_is_refundable(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    with sessions.begin() as s:
        pending = submit_transfer(
            s,
            user=alice.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(alice.account.id, bob.account.id, 500, "USD", None),
        ).transfer.id
    h = login(client, bob.email)
    assert_problem(refund(client, h, pending), 409, "CONFLICT")
    settle(sessions, pending)  # FAILED: insufficient funds
    assert_problem(refund(client, h, pending), 409, "CONFLICT")
    # A deposit is not refunded (its source is the bank's settlement account), nor is a refund.
    with sessions() as s:
        deposit_id = s.scalar(
            select(Transfer.id).where(
                Transfer.destination_account_id == alice.account.id, Transfer.kind == TransferKind.DEPOSIT
            )
        )
    assert_problem(refund(client, login(client, admin_user.email), deposit_id), 409, "CONFLICT")
    original = pay(sessions, alice, bob.account, 50)
    back = refund(client, h, original)
    settle(sessions, uuid.UUID(back.json["id"]))
    assert_problem(refund(client, login(client, alice.email), back.json["id"]), 409, "CONFLICT")


def test_a_failed_refund_frees_its_amount(client, sessions, paid, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob, original = paid
    carol = make_customer()
    pay(sessions, bob, carol.account, 1000)  # bob spent what he received: a refund cannot settle
    h = login(client, bob.email)
    doomed = refund(client, h, original, {"amount": 600})
    assert doomed.status_code == 202
    assert_problem(refund(client, h, original, {"amount": 500}), 422, "REFUND_EXCEEDS_AMOUNT")  # 600 is reserved
    failed = settle(sessions, uuid.UUID(doomed.json["id"]))
    assert (failed.status, failed.failure_code) == (TransferStatus.FAILED, "INSUFFICIENT_FUNDS")
    fund_back = refund(client, h, original)  # all 1,000 refundable again
    assert fund_back.status_code == 202 and fund_back.json["amount"] == 1000
    assert balance(sessions, alice.account.id) == 9_000


@pytest.mark.commits  # threads race on connections of their own
def test_concurrent_refunds_never_exceed_the_amount(app, sessions, paid) -> None:  # type: ignore[no-untyped-def]
    """50 refunds of 30 race for one transfer of 1,000: exactly 33 fit, 17 are refused."""
    _, bob, original = paid
    headers = login(app.test_client(), bob.email)
    start = threading.Barrier(50)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        client = app.test_client()
        start.wait()
        r = refund(client, headers, original, {"amount": 30})
        with lock:
            statuses.append(r.status_code)
            if r.status_code != 202:
                assert r.json["code"] == "REFUND_EXCEEDS_AMOUNT", r.json

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [202] * 33 + [422] * 17
    with sessions() as s:
        total = s.scalar(select(func.sum(Transfer.amount)).where(Transfer.refund_of == original))
    assert total == 990


@pytest.mark.commits  # threads race on connections of their own
def test_concurrent_duplicates_of_one_refund_make_one(app, sessions, paid) -> None:  # type: ignore[no-untyped-def]
    """20 copies of one request (same key and body, default amount) race: one refund, 19 replays."""
    _, bob, original = paid
    headers, key = login(app.test_client(), bob.email), str(uuid.uuid4())
    start = threading.Barrier(20)
    results: list[tuple[int, str]] = []

    def one() -> None:
        client = app.test_client()
        start.wait()
        r = refund(client, headers, original, key=key)
        results.append((r.status_code, r.json.get("id", r.json.get("code"))))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for code, _ in results) == [200] * 19 + [202]
    assert len({ident for _, ident in results}) == 1
    with sessions() as s:
        assert s.scalar(select(func.count()).where(Transfer.refund_of == original)) == 1


def test_openapi_documents_refunds_statements_and_audit_proofs(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json
    refunds = spec["paths"]["/api/v1/transfers/{transfer_id}/refunds"]["post"]
    assert refunds["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RefundIn")
    assert {"200", "202"} <= set(refunds["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in refunds["parameters"])
    statement = spec["paths"]["/api/v1/accounts/{account_id}/statement"]["get"]
    assert {p["name"] for p in statement["parameters"] if p["required"]} == {"from", "to"}
    content = statement["responses"]["200"]["content"]
    assert content["application/json"]["schema"]["$ref"].endswith("/StatementOut") and "text/csv" in content
    audit = spec["paths"]["/api/v1/transfers/{transfer_id}/audit"]["get"]
    schema = audit["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    item = spec["components"]["schemas"]["TransferAuditItemOut"]["properties"]
    assert schema == "TransferAuditOut" and {"seq", "row_hash", "sealed_batch", "proof"} <= set(item)


def test_a_frozen_payee_account_cannot_refund(client, sessions, paid, admin_user) -> None:  # type: ignore[no-untyped-def]
    _, bob, original = paid
    with sessions.begin() as s:
        set_frozen(s, bob.account.id, frozen=True, admin_id=admin_user.id, reason="review", request_id=None)
    assert_problem(refund(client, login(client, bob.email), original, {"amount": 1}), 409, "ACCOUNT_INACTIVE")
    with sessions() as s:
        assert s.scalar(select(func.count()).where(Transfer.refund_of == original)) == 0  # nothing bound
