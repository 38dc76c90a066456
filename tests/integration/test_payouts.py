"""Payouts (API.md "External money and reconciliation"): the bank's in-transit account, POST
/payouts checked as a transfer, GET /payouts, and the payout's status."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.accounts.service import in_transit_account_id, settlement_account_id
from core.models import Account, AccountKind, AccountStatus, AuditLog, Transfer, TransferKind, TransferStatus, User
from core.payouts.models import Payout
from tests.factories import PIN, fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer


def test_one_in_transit_account_per_currency_owned_by_the_bank(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        first = in_transit_account_id(s, "CHF")
        assert in_transit_account_id(s, "CHF") == first
        assert first != settlement_account_id(s, "CHF")  # its own account, beside the settlement one
        account = s.get_one(Account, first)
        assert (account.kind, account.user_id, account.status) == (AccountKind.IN_TRANSIT, None, AccountStatus.ACTIVE)


def test_an_in_transit_account_has_no_owner(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with pytest.raises(IntegrityError, match="owner_matches_kind"), sessions.begin() as s:
        s.add(Account(user_id=alice.user.id, kind=AccountKind.IN_TRANSIT, currency="CHF", status=AccountStatus.ACTIVE))
        s.flush()
    with sessions() as s:
        assert s.scalars(select(Account).where(Account.user_id == alice.user.id, Account.currency == "CHF")).all() == []


API = "/api/v1/payouts"
FILES = "/api/v1/admin/payout-files"
IBAN = "DE89370400440532013000"


def counterparty(client, headers, currency: str = "USD", **destination: str) -> str:  # type: ignore[no-untyped-def]
    body = {"name": "Landlord GmbH", "currency": currency, **(destination or {"iban": IBAN})}
    r = client.post("/api/v1/counterparties", json=body, headers=headers)
    assert r.status_code == 201, r.json
    return r.json["id"]  # type: ignore[no-any-return]


def payout_body(customer, to: str, **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {
        "source_account_id": str(customer.account.id),
        "counterparty_id": to,
        "amount": 2_500,
        "currency": "USD",
        "pin": PIN,
        "reference": "rent december",
    }
    body.update(over)
    return body


def post_payout(client, headers, body, key: str | None = "auto"):  # type: ignore[no-untyped-def]
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
    return client.post(API, json=body, headers=h)


@pytest.fixture
def funded(make_customer, sessions, admin_user, client):  # type: ignore[no-untyped-def]
    """A customer with 10,000 USD minor units, logged in, with a USD counterparty (IBAN)."""
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    h = login(client, alice.email)
    return alice, h, counterparty(client, h)


def balance(sessions, account_id: uuid.UUID) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.get_one(Account, account_id).balance


def settle(sessions, transfer_id: str) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(transfer_id))


def test_a_payout_is_accepted_as_a_transfer_to_the_in_transit_account(client, sessions, funded) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    r = post_payout(client, h, payout_body(alice, cp))
    assert r.status_code == 202, r.json
    payout = r.json
    assert payout["status"] == "PENDING" and payout["amount"] == 2_500 and payout["counterparty_id"] == cp
    assert len(payout["end_to_end_id"]) <= 35 and payout["file_id"] is None
    assert r.headers["Location"].endswith(f"{API}/{payout['id']}")
    with sessions() as s:
        transfer = s.get_one(Transfer, uuid.UUID(payout["transfer_id"]))
        in_transit = in_transit_account_id(s, "USD")
        assert (transfer.kind, transfer.status) == (TransferKind.TRANSFER, TransferStatus.PENDING)
        assert (transfer.source_account_id, transfer.destination_account_id) == (alice.account.id, in_transit)
        assert s.scalar(select(AuditLog.action).where(AuditLog.entity_id == payout["id"])) == "payout.requested"
    before = balance(sessions, in_transit)
    settle(sessions, payout["transfer_id"])
    assert balance(sessions, alice.account.id) == 7_500
    assert balance(sessions, in_transit) == before + 2_500
    shown = client.get(f"{API}/{payout['id']}", headers=h)
    assert shown.status_code == 200 and shown.json["status"] == "PENDING"
    assert client.get(f"/api/v1/transfers/{payout['transfer_id']}", headers=h).json["status"] == "COMPLETED"


def test_same_key_replays_the_payout_and_another_body_is_refused(client, sessions, funded) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    key = f"payout-{uuid.uuid4()}"
    first = post_payout(client, h, payout_body(alice, cp), key=key)
    again = post_payout(client, h, payout_body(alice, cp), key=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert_problem(post_payout(client, h, payout_body(alice, cp, amount=2_501), key=key), 422, "IDEMPOTENCY_KEY_REUSED")
    other = counterparty(client, h, iban="GB82WEST12345698765432")
    assert_problem(post_payout(client, h, payout_body(alice, other), key=key), 422, "IDEMPOTENCY_KEY_REUSED")
    # The payout's key is its own: the same key on POST /transfers binds nothing of the payout's.
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Payout).where(Payout.user_id == alice.user.id)) == 1


def test_a_payout_to_another_users_counterparty_is_a_404_and_counts_no_pin_failure(
    client, sessions, funded, make_customer
) -> None:  # type: ignore[no-untyped-def]
    alice, h, _ = funded
    bob = make_customer()
    bobs = counterparty(client, login(client, bob.email))
    r = post_payout(client, h, payout_body(alice, bobs, pin="0000"))
    assert_problem(r, 404, "NOT_FOUND")
    assert_problem(post_payout(client, h, payout_body(alice, str(uuid.uuid4()))), 404, "NOT_FOUND")
    with sessions() as s:
        assert s.get_one(User, alice.user.id).pin_failed_attempts == 0
        assert s.scalar(select(func.count()).select_from(Payout).where(Payout.user_id == alice.user.id)) == 0


def test_a_payout_from_another_users_account_is_a_404(client, funded, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    _, h, cp = funded
    bob = make_customer()
    fund(sessions, admin_user, bob.account, 5_000)
    assert_problem(post_payout(client, h, payout_body(bob, cp)), 404, "NOT_FOUND")
    assert balance(sessions, bob.account.id) == 5_000


@pytest.mark.parametrize(
    ("over", "status", "code"),
    [
        ({"currency": "EUR"}, 422, "CURRENCY_MISMATCH"),  # the counterparty's (and account's) is USD
        ({"pin": "9999"}, 403, "INVALID_PIN"),
        ({"amount": 0}, 422, "VALIDATION_ERROR"),
        ({"amount": 1.5}, 422, "VALIDATION_ERROR"),
        ({"amount": "100"}, 422, "VALIDATION_ERROR"),
        ({"currency": "ZZZ"}, 422, "VALIDATION_ERROR"),
        ({"counterparty_id": "nope"}, 422, "VALIDATION_ERROR"),
        ({"destination_account_id": str(uuid.uuid4())}, 422, "VALIDATION_ERROR"),  # unknown field
    ],
)
def test_bad_payouts_are_refused_and_write_nothing(client, sessions, funded, over, status, code) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    assert_problem(post_payout(client, h, payout_body(alice, cp, **over)), status, code)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Payout).where(Payout.user_id == alice.user.id)) == 0
    assert balance(sessions, alice.account.id) == 10_000


def test_a_counterparty_of_another_currency_is_a_currency_mismatch(client, funded) -> None:  # type: ignore[no-untyped-def]
    alice, h, _ = funded
    eur = counterparty(client, h, currency="EUR")
    assert_problem(post_payout(client, h, payout_body(alice, eur)), 422, "CURRENCY_MISMATCH")


def test_a_payout_needs_an_idempotency_key(client, funded) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    assert_problem(post_payout(client, h, payout_body(alice, cp), key=None), 400, "IDEMPOTENCY_KEY_REQUIRED")


def test_kyc_and_frozen_accounts_are_checked_as_for_a_transfer(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    pending = make_customer(approved=False)
    h = login(client, pending.email)
    assert_problem(post_payout(client, h, payout_body(pending, counterparty(client, h))), 403, "KYC_NOT_APPROVED")
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    h = login(client, alice.email)
    cp = counterparty(client, h)
    admin_h = login(client, admin_user.email)
    r = client.post(f"/api/v1/admin/accounts/{alice.account.id}/freeze", json={"reason": "check"}, headers=admin_h)
    assert r.status_code == 200
    assert_problem(post_payout(client, h, payout_body(alice, cp)), 409, "ACCOUNT_INACTIVE")


def test_the_per_transfer_limit_applies_to_payouts(client, sessions, funded, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    admin_h = login(client, admin_user.email)
    r = client.put(
        f"/api/v1/admin/accounts/{alice.account.id}/limits",
        json={"per_transfer": 1_000, "reason": "t"},
        headers=admin_h,
    )
    assert r.status_code == 200, r.json
    assert_problem(post_payout(client, h, payout_body(alice, cp)), 422, "LIMIT_EXCEEDED")


def test_a_payout_whose_transfer_fails_is_failed(client, sessions, funded) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    r = post_payout(client, h, payout_body(alice, cp, amount=10_001))  # more than the balance
    assert r.status_code == 202
    settle(sessions, r.json["transfer_id"])
    shown = client.get(f"{API}/{r.json['id']}", headers=h).json
    assert shown["status"] == "FAILED" and shown["failure_code"] == "INSUFFICIENT_FUNDS"
    assert [p["status"] for p in client.get(API, headers=h).json["items"]] == ["FAILED"]
    assert balance(sessions, alice.account.id) == 10_000


def test_payouts_are_listed_to_their_owner_and_admins_only(client, funded, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    ids = [post_payout(client, h, payout_body(alice, cp, amount=100 + i)).json["id"] for i in range(3)]
    page = client.get(f"{API}?limit=2", headers=h).json
    rest = client.get(f"{API}?limit=2&cursor={page['next_cursor']}", headers=h).json
    # One test transaction: one created_at, so the id orders them; every payout once.
    listed = [p["id"] for p in page["items"] + rest["items"]]
    assert sorted(listed) == sorted(ids) and len(page["items"]) == 2 and rest["next_cursor"] is None
    bob = make_customer()
    bobs = login(client, bob.email)
    assert client.get(API, headers=bobs).json["items"] == []
    assert_problem(client.get(f"{API}/{ids[0]}", headers=bobs), 404, "NOT_FOUND")
    assert client.get(f"{API}/{ids[0]}", headers=login(client, admin_user.email)).status_code == 200
    assert_problem(client.get(f"{API}/{uuid.uuid4()}", headers=h), 404, "NOT_FOUND")


def test_a_payouts_transfer_cannot_be_refunded(client, sessions, funded, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, h, cp = funded
    payout = post_payout(client, h, payout_body(alice, cp)).json
    settle(sessions, payout["transfer_id"])
    admin_h = {**login(client, admin_user.email), "Idempotency-Key": str(uuid.uuid4())}
    r = client.post(f"/api/v1/transfers/{payout['transfer_id']}/refunds", json={}, headers=admin_h)
    assert_problem(r, 409, "CONFLICT")
    assert balance(sessions, alice.account.id) == 7_500
