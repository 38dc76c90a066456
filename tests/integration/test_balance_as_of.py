"""GET /accounts/{id}/balance?as_of= (API.md "Spend controls"): the balance after every entry
applied at or before as_of, from the ledger in apply order, consistent with statements; 0
before the first entry, the current balance after now; bad instants are 422, never 500."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from core.accounts.balance_as_of import balance_as_of
from core.models import Account
from core.statements import statement
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer


def clock(sessions) -> datetime:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.execute(select(func.clock_timestamp())).scalar_one()  # type: ignore[no-any-return]


def as_of(sessions, account_id, instant: datetime) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return balance_as_of(s, s.get_one(Account, account_id), instant).balance


@pytest.mark.commits  # entries apart in time: each step is a transaction of its own
def test_the_balance_as_of_each_instant_follows_the_ledger(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    t0 = clock(sessions)
    fund(sessions, admin_user, alice.account, 1_000)
    t1 = clock(sessions)
    with sessions.begin() as s:
        tid = submit_transfer(
            s,
            user=alice.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(alice.account.id, bob.account.id, 300, "USD", None),
        ).transfer.id
    with sessions.begin() as s:
        settle_transfer(s, tid)
    t2 = clock(sessions)
    fund(sessions, admin_user, alice.account, 50)
    assert [as_of(sessions, alice.account.id, t) for t in (t0, t1, t2)] == [0, 1_000, 700]
    assert as_of(sessions, alice.account.id, t2 + timedelta(days=365)) == 750  # after now: the current balance
    assert as_of(sessions, bob.account.id, t1) == 0 and as_of(sessions, bob.account.id, t2) == 300
    # statements cut the same way: a period's closing balance is the balance as of its end, less 1 µs
    with sessions() as s:
        got = statement(s, s.get_one(Account, alice.account.id), t0, t2)
    assert got.closing_balance == as_of(sessions, alice.account.id, t2 - timedelta(microseconds=1)) == 700
    r = client.get(
        f"/api/v1/accounts/{alice.account.id}/balance",
        query_string={"as_of": t1.isoformat()},
        headers=login(client, alice.email),
    )
    assert r.status_code == 200, r.json
    assert r.json == {
        "account_id": str(alice.account.id),
        "currency": "USD",
        "as_of": r.json["as_of"],
        "balance": 1_000,
    }
    assert datetime.fromisoformat(r.json["as_of"]) == t1


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01",
        "2026-12-01T00:00:00",
        "2026-12-01 00:00:00Z",
        "2026-12-01T00:00Z",
        "2026-12-01T00:00:00+0100",
        "2026-13-01T00:00:00Z",
        "2026-12-01T25:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "yesterday",
        "",
    ],
)
def test_a_bad_as_of_is_a_422_naming_it(client, make_customer, value) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    r = client.get(
        f"/api/v1/accounts/{alice.account.id}/balance",
        query_string={"as_of": value},
        headers=login(client, alice.email),
    )
    assert "as_of" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"]


def test_edges_of_time_and_access(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 500)
    h = login(client, alice.email)
    url = f"/api/v1/accounts/{alice.account.id}/balance"
    for value, expected in (
        ("9999-12-31T23:59:59.999999Z", 500),
        ("9999-12-31T23:59:59Z", 500),
        ("0001-01-01T00:00:00Z", 0),
        ("2000-01-01T00:00:00.123456789-05:00", 0),
    ):
        r = client.get(url, query_string={"as_of": value}, headers=h)
        assert (r.status_code, r.json.get("balance")) == (200, expected), (value, r.json)
    assert_problem(client.get(url, headers=h), 422, "VALIDATION_ERROR")
    bob_h = login(client, bob.email)
    assert_problem(client.get(url, query_string={"as_of": "2026-01-01T00:00:00Z"}, headers=bob_h), 404, "NOT_FOUND")
    r = client.get(url, query_string={"as_of": "2030-01-01T00:00:00Z"}, headers=login(client, admin_user.email))
    assert r.status_code == 200 and r.json["balance"] == 500
