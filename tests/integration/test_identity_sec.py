"""Outside review (issue 10): destination probing, KYC transitions, OTP and login lockouts, revocations."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update

from core.accounts.service import settlement_account_id
from core.models import Account, AccountStatus
from tests.authflow import API, assert_problem, bearer, login, tokens
from tests.factories import PIN, fund


def _send(client: Any, h: dict[str, str], source: Any, destination: str, currency: str = "USD") -> Any:
    body = {
        "source_account_id": str(source.account.id),
        "destination_account_id": destination,
        "amount": 1,
        "currency": currency,
        "pin": PIN,
    }
    return client.post(f"{API}/transfers", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})


# ---- item 8: a destination that cannot receive gives one answer --------------------------------


def test_every_destination_that_cannot_receive_gets_the_same_answer(
    client, make_customer, sessions, admin_user
) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 100)
    h = bearer(tokens(client, alice.email)["access_token"])
    frozen, closed, eur = make_customer(), make_customer(), make_customer(currency="EUR")
    inactive = make_customer(approved=False)
    with sessions.begin() as s:
        s.execute(update(Account).where(Account.id == frozen.account.id).values(status=AccountStatus.FROZEN))
        s.execute(update(Account).where(Account.id == closed.account.id).values(status=AccountStatus.CLOSED))
        settlement = settlement_account_id(s, "USD")
    destinations = [frozen.account.id, closed.account.id, inactive.account.id, eur.account.id, settlement, uuid.uuid4()]
    answers = set()
    for destination in destinations:
        body = assert_problem(_send(client, h, alice, str(destination)), 404, "NOT_FOUND")
        answers.add((body["title"], body["detail"], tuple(sorted(body))))
    assert len(answers) == 1, answers
    # The caller's own account may be specific: it tells them nothing they do not know.
    assert_problem(_send(client, h, alice, str(make_customer().account.id), "EUR"), 422, "CURRENCY_MISMATCH")
    assert _send(client, h, alice, str(make_customer().account.id)).status_code == 202


# ---- item 4: KYC REJECT after APPROVE suspends the user and freezes the accounts ----------------


def test_kyc_reject_after_approve_suspends_and_freezes(client, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    alice_h = bearer(tokens(client, alice.email)["access_token"])
    bob_h = bearer(tokens(client, bob.email)["access_token"])
    admin_h = bearer(tokens(client, admin_user.email)["access_token"])
    assert _send(client, alice_h, alice, str(bob.account.id)).status_code == 202

    r = client.post(f"{API}/admin/users/{bob.user.id}/kyc", json={"decision": "REJECT", "reason": "fraud"},
                    headers=admin_h)  # fmt: skip
    assert r.status_code == 200, r.json
    assert (r.json["kyc_status"], r.json["status"]) == ("REJECTED", "SUSPENDED")
    with sessions() as s:
        assert s.get_one(Account, bob.account.id).status == AccountStatus.FROZEN
    # Incoming transfers now fail, and bob's tokens and logins stop working.
    assert_problem(_send(client, alice_h, alice, str(bob.account.id)), 404, "NOT_FOUND")
    assert_problem(client.get(f"{API}/me", headers=bob_h), 401, "UNAUTHORIZED")
    assert_problem(login(client, bob.email), 401, "UNAUTHORIZED")
    audit = client.get(f"{API}/admin/audit", query_string={"entity_id": str(bob.user.id)}, headers=admin_h).json
    rejected = [a for a in audit["items"] if a["action"] == "kyc.rejected"]
    assert rejected and rejected[0]["details"]["user_suspended"] is True
    assert rejected[0]["details"]["accounts_frozen"] == [str(bob.account.id)]
    frozen = client.get(f"{API}/admin/audit", query_string={"entity_id": str(bob.account.id)}, headers=admin_h).json
    assert "account.frozen" in [a["action"] for a in frozen["items"]]

    # Re-approval reinstates the user; the frozen account waits for an explicit unfreeze.
    r = client.post(f"{API}/admin/users/{bob.user.id}/kyc", json={"decision": "APPROVE"}, headers=admin_h)
    assert (r.json["kyc_status"], r.json["status"]) == ("APPROVED", "ACTIVE")
    with sessions() as s:
        assert s.get_one(Account, bob.account.id).status == AccountStatus.FROZEN
    unfreeze = client.post(f"{API}/admin/accounts/{bob.account.id}/unfreeze", json={"reason": "cleared"},
                           headers=admin_h)  # fmt: skip
    assert unfreeze.status_code == 200
    assert _send(client, alice_h, alice, str(bob.account.id)).status_code == 202
