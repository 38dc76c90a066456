"""A transfer settlement cannot apply ends FAILED (INTERNAL_ERROR) instead of poisoning its batch
forever; the sweeper parks what it re-published too often; deposits never overflow a balance."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from core.models import Account, AuditLog, Transfer, TransferStatus
from core.money import MAX_AMOUNT
from core.transfers import drain
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from core.transfers.sweep import claim_stale_pending, count_parked
from tests.factories import balance, fund
from tests.integration.test_api import assert_problem, login
from worker import settlement


def submit(sessions, src, dst, amount: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        movement = MoneyMovement(src.account.id, dst.account.id, amount, "USD", None)
        return submit_transfer(s, user=src.user, idempotency_key=str(uuid.uuid4()), movement=movement).transfer.id


@contextmanager
def balance_near_the_limit(sessions, account: Account, room: int) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The account a few units below 2^53-1 for the test, then back (the books stay balanced)."""
    before = balance(sessions, account.id)
    with sessions.begin() as s:
        s.execute(update(Account).where(Account.id == account.id).values(balance=MAX_AMOUNT - room))
    try:
        yield
    finally:
        with sessions.begin() as s:
            s.execute(update(Account).where(Account.id == account.id).values(balance=before))


@pytest.mark.commits  # the task runs on the worker's own engine
def test_a_transfer_that_cannot_be_applied_fails_alone_and_the_batch_settles(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user, worker_resources
) -> None:
    alice, bob, carol = make_customer(), make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    ids = [submit(sessions, alice, carol, 10), submit(sessions, alice, bob, 10), submit(sessions, alice, carol, 20)]
    with sessions() as s:
        partition = s.get_one(Transfer, ids[0]).partition
        accounts = sorted({alice.account.id, bob.account.id, carol.account.id})
    with balance_near_the_limit(sessions, bob.account, room=5):
        # The batch's transaction fails on bob's balance check on every attempt: before the fix
        # the error escaped, the task gave up and the sweeper re-queued the batch forever.
        outcomes = settlement._settle(worker_resources, partition, drain.Batch(ids, accounts))
        assert outcomes is not None
    with sessions() as s:
        rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_(ids)))}
        audits = s.scalars(select(AuditLog).where(AuditLog.entity_id == str(ids[1]))).all()
    assert [(rows[i].status, rows[i].failure_code) for i in ids] == [
        (TransferStatus.COMPLETED, None),
        (TransferStatus.FAILED, "INTERNAL_ERROR"),
        (TransferStatus.COMPLETED, None),
    ]
    assert {o.transfer_id for o in outcomes} == set(ids)
    assert balance(sessions, alice.account.id) == 970 and balance(sessions, carol.account.id) == 30
    failed = [a for a in audits if a.action == "transfer.failed"]
    assert len(failed) == 1 and failed[0].details["failure_code"] == "INTERNAL_ERROR"
    assert "IntegrityError" in failed[0].details["error"]


def test_the_sweeper_parks_a_transfer_it_requeued_too_often(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    tid = submit(sessions, alice, bob, 10)
    age, now = timedelta(seconds=30), datetime.now(UTC)

    def sweep(at: datetime) -> bool:
        with sessions.begin() as s:
            due = claim_stale_pending(s, older_than=age, now=at, limit=100_000, max_requeues=3)
        return tid in {d.transfer_id for d in due}

    with sessions() as s:
        parked_before = count_parked(s, 3)
    assert [sweep(now + (2 * k + 2) * age) for k in range(5)] == [True, True, True, False, False]
    with sessions() as s:
        assert s.get_one(Transfer, tid).requeue_count == 3
        assert count_parked(s, 3) >= parked_before + 1
    with sessions.begin() as s:  # parked is visible, not lost: it still settles when drained
        s.execute(update(Transfer).where(Transfer.id == tid).values(requeue_count=0))


def test_a_deposit_that_would_overflow_the_balance_is_422(client, make_customer, admin_user, sessions) -> None:  # type: ignore[no-untyped-def]
    bob = make_customer()
    h = {**login(client, admin_user.email), "Idempotency-Key": str(uuid.uuid4())}
    with balance_near_the_limit(sessions, bob.account, room=5):
        r = client.post(
            f"/api/v1/admin/accounts/{bob.account.id}/deposits", json={"amount": 6, "currency": "USD"}, headers=h
        )
        assert_problem(r, 422, "VALIDATION_ERROR")
        assert balance(sessions, bob.account.id) == MAX_AMOUNT - 5
    with sessions() as s:
        assert s.scalar(select(Transfer.id).where(Transfer.destination_account_id == bob.account.id)) is None


@pytest.mark.commits  # the task runs on the worker's own engine
def test_an_unsettleable_item_of_an_atomic_batch_fails_the_whole_batch(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user, worker_resources
) -> None:
    from tests.integration.test_settle_linked import person, submit_batch

    alice, bob, carol = (person(sessions, make_customer, extra_accounts=0) for _ in range(3))
    fund(sessions, admin_user, alice.accounts[0], 1000)
    ids = submit_batch(
        sessions,
        alice,
        [(alice.accounts[0], carol.accounts[0], 10), (alice.accounts[0], bob.accounts[0], 10)],
        atomic=True,
    )
    with sessions() as s:
        partition = s.get_one(Transfer, ids[0]).partition
    accounts = sorted({alice.accounts[0].id, bob.accounts[0].id, carol.accounts[0].id})
    with balance_near_the_limit(sessions, bob.accounts[0], room=5):  # the second item cannot be applied
        outcomes = settlement._settle(worker_resources, partition, drain.Batch(ids, accounts))
        assert outcomes is not None
    with sessions() as s:
        rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_(ids)))}
    # Never in part: the group cannot be split further, so the transfer isolation reached carries
    # INTERNAL_ERROR, every sibling LINKED_FAILED, and no money moved.
    assert {rows[i].status for i in ids} == {TransferStatus.FAILED}
    assert sorted(rows[i].failure_code or "" for i in ids) == ["INTERNAL_ERROR", "LINKED_FAILED"]
    assert balance(sessions, alice.accounts[0].id) == 1000 and balance(sessions, carol.accounts[0].id) == 0


@pytest.mark.commits  # two connections of their own: one holds a row, the other waits for it
def test_a_paused_drainers_timeouts_are_transient_not_poison(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    """The errors a paused or blocked drainer meets are retried, never isolated as poison: its
    transaction ended by Postgres for idling (25P03, an InternalError: it was isolated as poison)
    and a row lock waited out (55P03)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from worker.transient import is_transient

    alice = make_customer()
    with sessions() as paused:
        paused.execute(text("SET idle_in_transaction_session_timeout = '100ms'"))
        paused.execute(text("SELECT 1"))
        time.sleep(0.5)  # the fault itself: the holder's process does nothing past the timeout
        with pytest.raises(DBAPIError) as ended:
            paused.execute(text("SELECT 1"))
    assert type(ended.value.orig).__name__ == "IdleInTransactionSessionTimeout"
    assert is_transient(ended.value)
    with sessions() as holder, sessions() as waiter:
        holder.execute(select(Account).where(Account.id == alice.account.id).with_for_update())
        waiter.execute(text("SET lock_timeout = '100ms'"))
        with pytest.raises(DBAPIError) as waited:
            waiter.execute(select(Account).where(Account.id == alice.account.id).with_for_update())
    assert is_transient(waited.value)
    assert not is_transient(ValueError("a bug of the batch's own"))
