"""Outside review (issue 10): destination probing, KYC transitions, OTP and login lockouts, revocations."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update

from core.accounts.service import settlement_account_id
from core.models import Account, AccountStatus
from tests.authflow import API, assert_problem, bearer, tokens
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
