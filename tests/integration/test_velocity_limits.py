"""Velocity limits (API.md "Spend controls"): per_transfer refused at accept on every path, daily
and monthly outgoing use decided by settlement in accept order, use kept per UTC period (holds
while held, the captured amount once captured), the owner's own limits under the bank's caps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from core.accounts import limit_settings, limits, usage
from core.errors import LimitExceeded
from core.events import DomainEvent, EventType
from core.models import Account, AccountUsage, Transfer, TransferStatus
from core.reconcile import reconcile
from core.transfers import holds
from core.transfers.batch import BatchItem, accept_batch, prepare_batch
from core.transfers.idempotency import MoneyMovement
from core.transfers.settle import settle_batch
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.integration.test_api import assert_problem, login, post_transfer, transfer_body
from tests.profiles import examples
from tests.settling import settle_transfer


def caps(sessions, admin_user, account_id, **changes: Any) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        limit_settings.set_bank_limits(s, account_id, changes, admin_id=admin_user.id, reason="test", request_id=None)


def submit(sessions, customer, destination, amount: int, *, hold: bool = False) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return submit_transfer(  # type: ignore[no-any-return]
            s,
            user=customer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(customer.account.id, destination.account.id, amount, "USD", None, hold=hold),
        ).transfer.id


def settle(sessions, tid: uuid.UUID) -> Transfer:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        settle_transfer(s, tid)
    with sessions() as s:
        return s.get_one(Transfer, tid)


def used(sessions, account_id) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return usage.current(s, account_id)


def assert_books(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        report = reconcile(s)
    assert report.ok, report.problems


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100_000)
    return alice, bob


def test_a_daily_limit_fails_the_transfer_that_would_break_it(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, daily_outgoing=500)
    assert settle(sessions, submit(sessions, alice, bob, 300)).status == TransferStatus.COMPLETED
    refused = settle(sessions, submit(sessions, alice, bob, 300))
    assert (refused.status, refused.failure_code) == (TransferStatus.FAILED, "LIMIT_EXCEEDED")
    assert refused.failure_detail == {"limit": "daily_outgoing", "limit_amount": 500, "used": 300, "requested": 300}
    with sessions() as s:  # the transfer.failed event carries it too
        event = s.scalars(
            select(DomainEvent).where(
                DomainEvent.event_type == EventType.TRANSFER_FAILED, DomainEvent.data["id"].astext == str(refused.id)
            )
        ).one()
        assert event.data["failure_detail"] == refused.failure_detail
    assert settle(sessions, submit(sessions, alice, bob, 200)).status == TransferStatus.COMPLETED
    assert used(sessions, alice.account.id) == (500, 500)
    assert used(sessions, bob.account.id) == (0, 0)  # money received is not outgoing use
    assert_books(sessions)


def test_a_monthly_limit_counts_the_whole_month(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, monthly_outgoing=1_000, daily_outgoing=900)
    first = submit(sessions, alice, bob, 600)
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with sessions.begin() as s:  # accepted on the month's first day: another day, the same month
        s.execute(update(Transfer).where(Transfer.id == first).values(created_at=month_start))
    assert settle(sessions, first).status == TransferStatus.COMPLETED
    refused = settle(sessions, submit(sessions, alice, bob, 500))
    if datetime.now(UTC).day == 1:  # the same day too: the daily limit (900) is checked first
        assert refused.failure_detail == {"limit": "daily_outgoing", "limit_amount": 900, "used": 600, "requested": 500}
    else:
        assert refused.failure_detail == {
            "limit": "monthly_outgoing",
            "limit_amount": 1_000,
            "used": 600,
            "requested": 500,
        }


def test_a_transfer_counts_in_the_period_it_was_accepted_in(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, daily_outgoing=500)
    yesterday = submit(sessions, alice, bob, 400)
    with sessions.begin() as s:  # accepted a second before midnight, settled after it
        s.execute(
            update(Transfer)
            .where(Transfer.id == yesterday)
            .values(
                created_at=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
            )
        )
    assert settle(sessions, yesterday).status == TransferStatus.COMPLETED
    assert settle(sessions, submit(sessions, alice, bob, 500)).status == TransferStatus.COMPLETED
    assert used(sessions, alice.account.id)[0] == 500
    assert_books(sessions)


def test_holds_use_while_held_then_what_was_captured(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, daily_outgoing=1_000)
    hold = submit(sessions, alice, bob, 800, hold=True)
    assert settle(sessions, hold).status == TransferStatus.HELD
    assert used(sessions, alice.account.id) == (800, 800)
    assert settle(sessions, submit(sessions, alice, bob, 300)).failure_code == "LIMIT_EXCEEDED"
    with sessions.begin() as s:
        holds.capture(s, user=alice.user, transfer_id=hold, amount=500, idempotency_key=str(uuid.uuid4()))
    assert used(sessions, alice.account.id) == (500, 500)
    assert settle(sessions, submit(sessions, alice, bob, 300)).status == TransferStatus.COMPLETED
    voided = submit(sessions, alice, bob, 200, hold=True)
    settle(sessions, voided)
    assert used(sessions, alice.account.id) == (1_000, 1_000)
    with sessions.begin() as s:
        holds.void(s, user=alice.user, transfer_id=voided, idempotency_key=str(uuid.uuid4()))
    assert used(sessions, alice.account.id) == (800, 800)
    expired = submit(sessions, alice, bob, 150, hold=True)
    settle(sessions, expired)
    with sessions.begin() as s:
        s.execute(
            update(Transfer).where(Transfer.id == expired).values(hold_expires_at=datetime.now(UTC) - timedelta(1))
        )
        assert expired in holds.expire_due(s, now=datetime.now(UTC))  # (other tests may leave due holds)
    assert used(sessions, alice.account.id) == (800, 800)
    assert_books(sessions)


def test_an_atomic_batch_over_a_daily_limit_fails_whole(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, daily_outgoing=500)
    items = [
        BatchItem(str(uuid.uuid4()), MoneyMovement(alice.account.id, bob.account.id, amount, "USD", None))
        for amount in (200, 200, 200)
    ]
    with sessions.begin() as s:
        result = accept_batch(s, prepare_batch(s, alice.user, items), user=alice.user, atomic=True)
    ids = [r.transfer.id for r in result.items]  # type: ignore[union-attr]
    settle(sessions, ids[0])
    with sessions() as s:
        got = [(t.failure_code, t.failure_detail) for t in (s.get_one(Transfer, i) for i in ids)]
    assert got == [
        ("LINKED_FAILED", None),
        ("LINKED_FAILED", None),
        ("LIMIT_EXCEEDED", {"limit": "daily_outgoing", "limit_amount": 500, "used": 400, "requested": 200}),
    ]
    assert used(sessions, alice.account.id) == (0, 0)
    assert_books(sessions)


def test_a_non_atomic_batch_is_decided_in_accept_order_in_one_settlement(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, daily_outgoing=500)
    items = [
        BatchItem(str(uuid.uuid4()), MoneyMovement(alice.account.id, bob.account.id, amount, "USD", None))
        for amount in (300, 300, 200)
    ]
    with sessions.begin() as s:
        result = accept_batch(s, prepare_batch(s, alice.user, items), user=alice.user, atomic=False)
    ids = [r.transfer.id for r in result.items]  # type: ignore[union-attr]
    with sessions.begin() as s:
        settle_batch(s, ids)
    with sessions() as s:
        assert [s.get_one(Transfer, i).failure_code for i in ids] == [None, "LIMIT_EXCEEDED", None]
    assert used(sessions, alice.account.id) == (500, 500)
    assert_books(sessions)


def test_deposits_and_refunds_are_not_outgoing_use(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    from core.transfers.refund import refund_transfer

    alice, bob = pair
    caps(sessions, admin_user, bob.account.id, daily_outgoing=100)
    paid = submit(sessions, alice, bob, 500)
    settle(sessions, paid)
    with sessions.begin() as s:
        refund = refund_transfer(
            s, user=bob.user, transfer_id=paid, amount=300, reason=None, idempotency_key=str(uuid.uuid4())
        ).transfer.id
    assert settle(sessions, refund).status == TransferStatus.COMPLETED
    assert used(sessions, bob.account.id) == (0, 0)
    assert used(sessions, alice.account.id) == (500, 500)


# ---- per_transfer, at accept -----------------------------------------------------------------


def test_per_transfer_is_refused_at_accept_on_every_path(client, sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, per_transfer=1_000)
    h = login(client, alice.email)
    body = assert_problem(post_transfer(client, h, transfer_body(alice, bob, amount=1_001)), 422, "LIMIT_EXCEEDED")
    assert (body["limit"], body["limit_amount"], body["requested"]) == ("per_transfer", 1_000, 1_001)
    assert post_transfer(client, h, transfer_body(alice, bob, amount=1_000)).status_code == 202
    assert post_transfer(client, h, transfer_body(alice, bob, amount=1_001, hold=True)).status_code == 422
    batch = client.post(
        "/api/v1/transfers/batch",
        json={
            "pin": "1234",
            "atomic": False,
            "items": [
                {
                    "idempotency_key": str(uuid.uuid4()),
                    "source_account_id": str(alice.account.id),
                    "destination_account_id": str(bob.account.id),
                    "amount": amount,
                    "currency": "USD",
                }
                for amount in (1_001, 999)
            ],
        },
        headers=h,
    )
    assert [i["status"] for i in batch.json["items"]] == [422, 202]
    assert batch.json["items"][0]["error"]["code"] == "LIMIT_EXCEEDED"
    with sessions() as s:  # a refused accept binds and writes nothing
        assert (
            s.scalar(select(Transfer).where(Transfer.source_account_id == alice.account.id, Transfer.amount > 1_000))
            is None
        )


def test_per_transfer_careful_path_raises_the_same(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, per_transfer=10)
    with pytest.raises(LimitExceeded), sessions.begin() as s:
        submit_transfer(
            s,
            user=alice.user,
            idempotency_key="k",
            movement=MoneyMovement(alice.account.id, bob.account.id, 11, "USD", None),
        )


@settings(max_examples=examples(60), deadline=None)
@given(
    bank=st.none() | st.integers(0, 2**53 - 1),
    own=st.none() | st.integers(0, 2**53 - 1),
    amount=st.integers(1, 2**53 - 1),
)
def test_the_sql_per_transfer_rule_is_the_python_one(engine, bank, own, amount) -> None:  # type: ignore[no-untyped-def]
    """The one-statement accept's rendering of per_transfer agrees with check_per_transfer."""
    python = limits.per_transfer_breach(limits.Limits(per_transfer=limits.in_force(bank, own)), amount) is None
    with engine.connect() as c:
        sql = c.execute(
            text(
                "SELECT " + limits.per_transfer_allows_sql("a", "CAST(:amount AS bigint)") + " FROM "
                "(SELECT CAST(:bank AS bigint) AS bank_per_transfer, CAST(:own AS bigint) AS own_per_transfer) a"
            ),
            {"bank": bank, "own": own, "amount": amount},
        ).scalar_one()
    assert sql is python


# ---- the owner's limits ----------------------------------------------------------------------


def test_the_owner_sets_limits_at_or_below_the_banks_caps(client, sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    caps(sessions, admin_user, alice.account.id, daily_outgoing=5_000, per_transfer=None)
    h = login(client, alice.email)
    url = f"/api/v1/accounts/{alice.account.id}/limits"
    body = assert_problem(client.put(url, json={"daily_outgoing": 5_001}, headers=h), 422, "LIMIT_ABOVE_BANK_CAP")
    assert "daily_outgoing" in body["errors"]
    r = client.put(url, json={"daily_outgoing": 300, "per_transfer": 250}, headers=h)
    assert r.status_code == 200, r.json
    assert (r.json["daily_outgoing"], r.json["per_transfer"], r.json["bank_caps"]["daily_outgoing"]) == (
        300,
        250,
        5_000,
    )
    assert_problem(post_transfer(client, h, transfer_body(alice, bob, amount=251)), 422, "LIMIT_EXCEEDED")
    assert settle(sessions, submit(sessions, alice, bob, 250)).status == TransferStatus.COMPLETED
    assert settle(sessions, submit(sessions, alice, bob, 60)).failure_detail == {
        "limit": "daily_outgoing",
        "limit_amount": 300,
        "used": 250,
        "requested": 60,
    }
    assert client.get(url, headers=h).json["used_today"] == 250
    r = client.put(url, json={"daily_outgoing": None}, headers=h)  # back to the bank's cap alone
    assert r.json["daily_outgoing"] == 5_000
    for bad, field in (({"daily_outgoing": -1}, "daily_outgoing"), ({"per_transfer": 2.5}, "per_transfer")):
        assert field in assert_problem(client.put(url, json=bad, headers=h), 422, "VALIDATION_ERROR")["errors"]
    # someone else's account, or none: 404 for both reading and setting
    bob_h = login(client, bob.email)
    assert_problem(client.put(url, json={"daily_outgoing": 1}, headers=bob_h), 404, "NOT_FOUND")
    assert_problem(client.get(url, headers=bob_h), 404, "NOT_FOUND")
    assert_problem(client.get(f"/api/v1/accounts/{uuid.uuid4()}/limits", headers=h), 404, "NOT_FOUND")


def test_usage_rows_are_one_per_account_and_period(sessions, pair, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    for amount in (10, 20, 30):
        settle(sessions, submit(sessions, alice, bob, amount))
    with sessions() as s:
        rows = s.scalars(select(AccountUsage).where(AccountUsage.account_id == alice.account.id)).all()
        assert sorted((r.period, r.used) for r in rows) == [("DAY", 60), ("MONTH", 60)]
        assert s.get_one(Account, alice.account.id).balance == 100_000 - 60


def test_new_accounts_take_the_operators_default_caps(make_app, sessions) -> None:  # type: ignore[no-untyped-def]
    app = make_app(default_limit_per_transfer=1_000, default_limit_daily_outgoing=5_000)
    client = app.test_client()
    email = f"d.{uuid.uuid4().hex[:10]}@example.com"
    r = client.post(
        "/api/v1/auth/register", json={"email": email, "password": "correct horse battery", "full_name": "D"}
    )
    assert r.status_code == 201, r.json
    with sessions() as s:
        account = s.get_one(Account, uuid.UUID(r.json["account"]["id"]))
        assert limits.bank_caps(account) == limits.Limits(1_000, 5_000, None)
        assert limits.own_limits(account) == limits.Limits()


# ---- exactness under concurrency and redelivery ------------------------------------------------


@pytest.mark.commits
def test_use_stays_exact_under_concurrent_captures_voids_and_settlements(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    """Captures and voids of an account's holds race settlements of its new debits (each thread its
    own connection): every release and every debit lands once, the running totals equal what the
    transfers make (reconcile recomputes them), and a redelivered batch changes nothing."""
    import threading

    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000_000)
    caps(sessions, admin_user, alice.account.id, daily_outgoing=6_000)
    held = [submit(sessions, alice, bob, 500, hold=True) for _ in range(8)]
    for tid in held:
        assert settle(sessions, tid).status == TransferStatus.HELD
    debits = [submit(sessions, alice, bob, 300) for _ in range(12)]
    errors: list[BaseException] = []

    def end(k: int, tid: uuid.UUID) -> None:
        try:
            with sessions.begin() as s:
                if k % 2:
                    holds.void(s, user=alice.user, transfer_id=tid, idempotency_key=str(uuid.uuid4()))
                else:
                    holds.capture(s, user=alice.user, transfer_id=tid, amount=200, idempotency_key=str(uuid.uuid4()))
        except BaseException as exc:
            errors.append(exc)

    def pay(tid: uuid.UUID) -> None:
        try:
            with sessions.begin() as s:
                settle_transfer(s, tid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(k, tid)) for k, tid in enumerate(held)]
    threads += [threading.Thread(target=pay, args=(tid,)) for tid in debits]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with sessions() as s:
        statuses = [s.get_one(Transfer, tid).status for tid in debits]
    completed = statuses.count(TransferStatus.COMPLETED)
    # 4 captures of 200 and the debits that fit the day's 6,000: how many depends on how many holds
    # still counted their 500 when each debit was decided (all 8: 6 fit; none: all 12)
    assert used(sessions, alice.account.id)[0] == 4 * 200 + 300 * completed <= 6_000
    assert 6 <= completed <= 12
    assert statuses.count(TransferStatus.FAILED) == 12 - completed
    before = used(sessions, alice.account.id)
    with sessions.begin() as s:  # a redelivered batch finds its transfers final: no use counted twice
        settle_batch(s, debits)
    assert used(sessions, alice.account.id) == before
    assert_books(sessions)
