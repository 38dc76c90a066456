"""Settlement against real Postgres: outcomes, guards, redelivery."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.accounts.service import set_frozen
from core.errors import CurrencyMismatch, KycNotApproved, NotFound, SameAccount
from core.models import LedgerEntry, Transfer, TransferStatus
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.settling import settle_transfer


def submit(sessions, customer, dest_account, amount, currency="USD", key=None):  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return submit_transfer(
            s,
            user=customer.user,
            idempotency_key=key or str(uuid.uuid4()),
            movement=MoneyMovement(customer.account.id, dest_account.id, amount, currency, None),
        ).transfer


def settle(sessions, transfer_id):  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return settle_transfer(s, transfer_id)


def entries(sessions, transfer_id) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(LedgerEntry).where(LedgerEntry.transfer_id == transfer_id)))


def test_completes_with_two_entries(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    t = submit(sessions, alice, bob.account, 300)
    out = settle(sessions, t.id)
    assert (out.status, out.applied, out.failure_code) == (TransferStatus.COMPLETED, True, None)
    assert balance(sessions, alice.account.id) == 700
    assert balance(sessions, bob.account.id) == 300
    got = sorted((e.amount, e.balance_after) for e in entries(sessions, t.id))
    assert got == [(-300, 700), (300, 300)]


def test_insufficient_funds_fails_without_entries(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    t = submit(sessions, alice, bob.account, 101)
    out = settle(sessions, t.id)
    assert (out.status, out.failure_code) == (TransferStatus.FAILED, "INSUFFICIENT_FUNDS")
    assert balance(sessions, alice.account.id) == 100
    assert entries(sessions, t.id) == []


@pytest.mark.parametrize("frozen_side", ["source", "destination"])
def test_account_frozen_after_submit_fails_the_transfer(sessions, make_customer, admin_user, frozen_side) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 500)
    t = submit(sessions, alice, bob.account, 200)
    target = alice.account if frozen_side == "source" else bob.account
    with sessions.begin() as s:
        set_frozen(s, target.id, frozen=True, admin_id=admin_user.id, reason="test", request_id=None)
    out = settle(sessions, t.id)
    assert (out.status, out.failure_code) == (TransferStatus.FAILED, "ACCOUNT_INACTIVE")
    assert balance(sessions, alice.account.id) == 500
    assert balance(sessions, bob.account.id) == 0


def test_submit_refuses_an_inactive_destination_without_saying_why(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, pending = make_customer(), make_customer(approved=False)
    with pytest.raises(NotFound, match="cannot receive"):
        submit(sessions, alice, pending.account, 1)


def test_submit_refuses_unapproved_kyc(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    pending, bob = make_customer(approved=False), make_customer()
    with pytest.raises(KycNotApproved):
        submit(sessions, pending, bob.account, 1)


def test_submit_refuses_currency_mismatch(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, eur = make_customer(), make_customer(currency="EUR")
    with pytest.raises(NotFound, match="cannot receive"):  # the destination's currency is not revealed
        submit(sessions, alice, eur.account, 1, currency="USD")
    with pytest.raises(CurrencyMismatch):  # the caller's own source
        submit(sessions, alice, make_customer().account, 1, currency="EUR")


def test_submit_refuses_same_account_and_the_database_too(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with pytest.raises(SameAccount):
        submit(sessions, alice, alice.account, 1)
    with pytest.raises(IntegrityError, match="distinct_accounts"), sessions.begin() as s:
        s.add(
            Transfer(
                kind="TRANSFER", initiated_by=alice.user.id, idempotency_key="x", request_hash="h",
                source_account_id=alice.account.id, destination_account_id=alice.account.id,
                amount=1, currency="USD",
            )
        )  # fmt: skip


def test_submit_refuses_someone_elses_source(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = make_customer(), make_customer(), make_customer()
    with pytest.raises(NotFound), sessions.begin() as s:
        submit_transfer(
            s,
            user=alice.user,
            idempotency_key="k",
            movement=MoneyMovement(bob.account.id, carol.account.id, 1, "USD", None),
        )


def test_customer_balance_cannot_go_negative_even_if_code_forgets(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with pytest.raises(IntegrityError, match="within_credit_line"), sessions.begin() as s:
        s.get_one(type(alice.account), alice.account.id).balance = -1


def test_redelivery_changes_balances_once(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    t = submit(sessions, alice, bob.account, 400)
    first, second = settle(sessions, t.id), settle(sessions, t.id)
    assert first.applied and not second.applied
    assert second.status == TransferStatus.COMPLETED
    assert balance(sessions, alice.account.id) == 600
    assert len(entries(sessions, t.id)) == 2


@pytest.mark.commits  # eight threads, each on a connection of its own, race for one transfer
def test_concurrent_settlements_of_one_transfer_apply_once(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    t = submit(sessions, alice, bob.account, 250)
    results = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        results.append(settle(sessions, t.id))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(r.applied for r in results) == 1
    assert balance(sessions, alice.account.id) == 750
    assert balance(sessions, bob.account.id) == 250


def test_the_entries_of_deposits_and_transfers_sum_to_zero(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    ok = settle(sessions, submit(sessions, alice, bob.account, 300).id)
    failed = settle(sessions, submit(sessions, alice, bob.account, 5000).id)
    assert (ok.status, failed.status) == (TransferStatus.COMPLETED, TransferStatus.FAILED)
    with sessions() as s:
        touched = select(LedgerEntry.transfer_id).where(LedgerEntry.account_id.in_([alice.account.id, bob.account.id]))
        amounts = list(s.scalars(select(LedgerEntry.amount).where(LedgerEntry.transfer_id.in_(touched))))
    assert len(amounts) == 4  # the deposit's two entries (one on the settlement account), the transfer's two
    assert sum(amounts) == 0
