"""Credit lines (API.md "Spend controls"): an account's available balance is balance - held +
credit_limit, and no settlement, hold, capture, batch or refund takes it below zero, so no balance
goes below -credit_limit; lowering a line leaves the account over it until it is back within."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select, text

from core.accounts import limit_settings
from core.models import Account, AuditLog, Transfer, TransferStatus
from core.reconcile import reconcile
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.integration.test_api import assert_problem, login, post_transfer, transfer_body
from tests.settling import settle_transfer


def set_line(sessions, admin_user, account_id, **changes: Any) -> Account:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return limit_settings.set_bank_limits(
            s, account_id, changes, admin_id=admin_user.id, reason="test", request_id=None
        )


def pay(sessions, customer, destination, amount: int, *, hold: bool = False) -> Transfer:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        tid = submit_transfer(
            s,
            user=customer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(customer.account.id, destination.account.id, amount, "USD", None, hold=hold),
        ).transfer.id
    with sessions.begin() as s:
        settle_transfer(s, tid)
    with sessions() as s:
        return s.get_one(Transfer, tid)


def state(sessions, account_id) -> tuple[int, int, bool]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        a = s.get_one(Account, account_id, populate_existing=True)
        return a.balance, a.held_amount, a.over_credit_line


def assert_books(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        report = reconcile(s)
    assert report.ok, report.problems


def test_a_line_lets_the_balance_go_negative_down_to_the_line_and_no_further(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=500)
    assert pay(sessions, alice, bob, 300).status == TransferStatus.COMPLETED
    assert pay(sessions, alice, bob, 200).status == TransferStatus.COMPLETED
    refused = pay(sessions, alice, bob, 1)
    assert (refused.status, refused.failure_code) == (TransferStatus.FAILED, "INSUFFICIENT_FUNDS")
    assert refused.failure_detail == {"limit": "credit_limit", "limit_amount": 500, "used": 500, "requested": 1}
    assert state(sessions, alice.account.id) == (-500, 0, False)
    assert_books(sessions)


def test_without_a_line_insufficient_funds_carries_no_detail(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    refused = pay(sessions, alice, bob, 101)
    assert (refused.failure_code, refused.failure_detail) == ("INSUFFICIENT_FUNDS", None)


def test_holds_count_against_the_line_and_a_capture_spends_it(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    set_line(sessions, admin_user, alice.account.id, credit_limit=400)
    hold = pay(sessions, alice, bob, 450, hold=True)
    assert hold.status == TransferStatus.HELD
    refused = pay(sessions, alice, bob, 51)
    assert refused.failure_detail == {"limit": "credit_limit", "limit_amount": 400, "used": 350, "requested": 51}
    from core.transfers import holds

    with sessions.begin() as s:
        holds.capture(s, user=alice.user, transfer_id=hold.id, amount=450, idempotency_key="cap")
    assert state(sessions, alice.account.id) == (-350, 0, False)
    assert_books(sessions)


def test_lowering_a_line_below_what_is_drawn_stops_debits_until_back_within(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=500)
    pay(sessions, alice, bob, 400)
    account = set_line(sessions, admin_user, alice.account.id, credit_limit=100)
    assert (account.credit_limit, account.over_credit_line) == (100, True)
    assert_books(sessions)  # over its line because of the lowering: not a reconcile failure
    assert pay(sessions, alice, bob, 1).failure_code == "INSUFFICIENT_FUNDS"
    fund(sessions, admin_user, alice.account, 250)  # -150: still over the line of 100
    assert state(sessions, alice.account.id) == (-150, 0, True)
    assert pay(sessions, alice, bob, 1).failure_code == "INSUFFICIENT_FUNDS"
    fund(sessions, admin_user, alice.account, 100)  # -50: back within
    assert state(sessions, alice.account.id) == (-50, 0, False)
    assert pay(sessions, alice, bob, 50).status == TransferStatus.COMPLETED
    assert pay(sessions, alice, bob, 1).failure_code == "INSUFFICIENT_FUNDS"
    assert_books(sessions)
    with sessions() as s:
        audit = s.scalars(
            select(AuditLog).where(AuditLog.entity_id == str(alice.account.id), AuditLog.action == "account.limits_set")
        ).all()
    assert [a.details["after"]["credit_limit"] for a in audit] == [500, 100]
    assert audit[-1].details["over_credit_line"] is True and audit[-1].actor_id == admin_user.id


def test_an_atomic_batch_fails_whole_at_the_line(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    from core.transfers.batch import BatchItem, accept_batch, prepare_batch

    alice, bob = make_customer(), make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=500)
    items = [
        BatchItem(str(uuid.uuid4()), MoneyMovement(alice.account.id, bob.account.id, amount, "USD", None))
        for amount in (300, 300)
    ]
    with sessions.begin() as s:
        result = accept_batch(s, prepare_batch(s, alice.user, items), user=alice.user, atomic=True)
    ids = [r.transfer.id for r in result.items]  # type: ignore[union-attr]
    with sessions.begin() as s:
        settle_transfer(s, ids[0])
    with sessions() as s:
        got = [(t.failure_code, t.failure_detail) for t in (s.get_one(Transfer, i) for i in ids)]
    assert got == [
        ("LINKED_FAILED", None),
        ("INSUFFICIENT_FUNDS", {"limit": "credit_limit", "limit_amount": 500, "used": 300, "requested": 300}),
    ]
    assert state(sessions, alice.account.id) == (0, 0, False)


def test_the_database_refuses_a_balance_beyond_the_line(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import IntegrityError

    alice = make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=100)
    with sessions.begin() as s:
        s.execute(text("UPDATE accounts SET balance = -100 WHERE id = :id"), {"id": alice.account.id})
    with pytest.raises(IntegrityError, match="within_credit_line"), sessions.begin() as s:
        s.execute(text("UPDATE accounts SET balance = -101 WHERE id = :id"), {"id": alice.account.id})


def test_reconcile_reports_a_balance_beyond_its_line(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=100)
    with sessions.begin() as s:  # what a bug with the CHECK gone would leave (the test's transaction rolls back)
        s.execute(text("ALTER TABLE accounts DROP CONSTRAINT ck_accounts_within_credit_line"))
        s.execute(text("UPDATE accounts SET balance = -101 WHERE id = :id"), {"id": alice.account.id})
        s.execute(text("UPDATE accounts SET balance = 101 WHERE kind = 'SETTLEMENT' AND currency = 'USD'"))
    with sessions() as s:
        problems = reconcile(s).problems
    assert any(str(alice.account.id) in p and "beyond its credit line 100" in p for p in problems), problems


# ---- API ----------------------------------------------------------------------------------


def test_admin_sets_a_line_and_the_account_shows_it(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    admin_h = login(client, admin_user.email)
    r = client.put(
        f"/api/v1/admin/accounts/{alice.account.id}/limits",
        json={"credit_limit": 5000, "daily_outgoing": 2000, "reason": "approved overdraft"},
        headers=admin_h,
    )
    assert r.status_code == 200, r.json
    assert r.json == {
        "account_id": str(alice.account.id),
        "currency": "USD",
        "credit_limit": 5000,
        "per_transfer": None,
        "daily_outgoing": 2000,
        "monthly_outgoing": None,
        "used_today": 0,
        "used_this_month": 0,
        "bank_caps": {"per_transfer": None, "daily_outgoing": 2000, "monthly_outgoing": None},
    }
    h = login(client, alice.email)
    account = client.get(f"/api/v1/accounts/{alice.account.id}", headers=h).json
    assert (account["balance"], account["credit_limit"], account["available_balance"]) == (0, 5000, 5000)
    assert client.get(f"/api/v1/accounts/{alice.account.id}/limits", headers=h).json == r.json
    # null ends the line; a field left out is unchanged
    r = client.put(
        f"/api/v1/admin/accounts/{alice.account.id}/limits",
        json={"credit_limit": None, "reason": "closed"},
        headers=admin_h,
    )
    assert (r.json["credit_limit"], r.json["daily_outgoing"]) == (0, 2000)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credit_limit": -1}, "credit_limit"),
        ({"credit_limit": 1.5}, "credit_limit"),
        ({"credit_limit": "100"}, "credit_limit"),
        ({"credit_limit": 2**53}, "credit_limit"),
        ({"daily_outgoing": -5}, "daily_outgoing"),
        ({"per_transfer": True}, "per_transfer"),
        ({"overdraft": 5}, "overdraft"),
    ],
)
def test_admin_limits_refuse_bad_values_naming_the_field(client, make_customer, admin_user, body, field) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    r = client.put(
        f"/api/v1/admin/accounts/{alice.account.id}/limits",
        json={**body, "reason": "x"},
        headers=login(client, admin_user.email),
    )
    assert field in assert_problem(r, 422, "VALIDATION_ERROR")["errors"]


def test_only_an_admin_sets_a_line_and_only_on_a_customer_account(client, make_customer, admin_user, sessions) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    h = login(client, alice.email)
    r = client.put(
        f"/api/v1/admin/accounts/{alice.account.id}/limits", json={"credit_limit": 9, "reason": "x"}, headers=h
    )
    assert r.status_code == 403
    r = client.put(f"/api/v1/accounts/{alice.account.id}/limits", json={"credit_limit": 9}, headers=h)
    assert "credit_limit" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"]
    from core.accounts.service import settlement_account_id

    with sessions.begin() as s:
        settlement = settlement_account_id(s, "USD")
    admin_h = login(client, admin_user.email)
    for account_id in (settlement, uuid.uuid4()):
        r = client.put(
            f"/api/v1/admin/accounts/{account_id}/limits", json={"credit_limit": 9, "reason": "x"}, headers=admin_h
        )
        assert_problem(r, 404, "NOT_FOUND")


def test_a_transfer_over_the_line_fails_with_its_detail_over_the_api(
    client, make_customer, admin_user, sessions
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=100)
    h = login(client, alice.email)
    r = post_transfer(client, h, transfer_body(alice, bob, amount=150))
    assert r.status_code == 202
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(r.json["id"]))
    got = client.get(f"/api/v1/transfers/{r.json['id']}", headers=h).json
    assert (got["status"], got["failure_code"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert got["failure_detail"] == {"limit": "credit_limit", "limit_amount": 100, "used": 0, "requested": 150}


# ---- concurrency ----------------------------------------------------------------------------


@pytest.mark.commits
def test_threads_settling_into_and_out_of_a_line_never_pass_it(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    """Debits and credits of one account with a line, settled by 8 threads at once (each its own
    connection and transaction), and the line lowered midway: the balance never goes below
    -credit_limit (the CHECK would fail the settling transaction), every debit that fits
    settles, and the books reconcile."""
    alice, bob, carol = make_customer(), make_customer(), make_customer()
    set_line(sessions, admin_user, alice.account.id, credit_limit=1_000)
    fund(sessions, admin_user, carol.account, 10_000)
    out = []
    into = []
    for _ in range(24):
        with sessions.begin() as s:
            out.append(
                submit_transfer(
                    s,
                    user=alice.user,
                    idempotency_key=str(uuid.uuid4()),
                    movement=MoneyMovement(alice.account.id, bob.account.id, 100, "USD", None),
                ).transfer.id
            )
    for _ in range(8):
        with sessions.begin() as s:
            into.append(
                submit_transfer(
                    s,
                    user=carol.user,
                    idempotency_key=str(uuid.uuid4()),
                    movement=MoneyMovement(carol.account.id, alice.account.id, 50, "USD", None),
                ).transfer.id
            )
    work = out + into
    errors: list[BaseException] = []
    lowest: list[int] = []

    def settle_some(k: int) -> None:
        try:
            for tid in work[k::8]:
                with sessions.begin() as s:
                    settle_transfer(s, tid)
                    lowest.append(s.execute(select(Account.balance).where(Account.id == alice.account.id)).scalar_one())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=settle_some, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with sessions() as s:
        statuses = [s.get_one(Transfer, tid).status for tid in out]
        balance = s.get_one(Account, alice.account.id).balance
    completed = statuses.count(TransferStatus.COMPLETED)
    assert balance == 400 - 100 * completed  # 8 credits of 50
    assert min(lowest) >= -1_000 and balance >= -1_000
    assert 10 <= completed <= 14  # at least the line; at most the line and every credit
    assert_books(sessions)
