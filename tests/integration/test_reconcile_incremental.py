"""reconcile --incremental (issue 28 item 3): a clean pass records its horizon; the next
incremental pass checks only the transfers and accounts audit rows of later transactions name,
and tampering with what is new is found by it and by the full pass; tampering with what is old is
found by the full pass only (the point of incremental)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from core.reconcile import Report, reconcile, record_checkpoint
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.integration.conftest import SmallBook
from tests.settling import settle_transfer

# The horizon is a snapshot's xmin and the scope what later transactions wrote: real commits. Each
# test has a small book of its own (``small_book``): the full passes here would otherwise walk
# everything the suite committed before.
pytestmark = pytest.mark.commits


def _pay(sessions: sessionmaker[Session], payer, payee, amount: int, *, hold: bool = False) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        tid: uuid.UUID = submit_transfer(
            s,
            user=payer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(payer.account.id, payee.account.id, amount, "USD", None, hold=hold),
        ).transfer.id
    with sessions.begin() as s:
        settle_transfer(s, tid)
    return tid


def _checkpoint(sessions: sessionmaker[Session]) -> Report:
    with sessions.begin() as s:
        report = reconcile(s)
        assert report.ok, report.problems
        assert record_checkpoint(s, report)
    return report


def _both(sessions: sessionmaker[Session], statement: str, **params: object) -> tuple[Report, Report]:
    """The full and the incremental pass over a change that bypasses the ledger, rolled back."""
    with sessions.begin() as s:
        s.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        for one in statement.split(";"):
            s.execute(text(one), {k: v for k, v in params.items() if f":{k}" in one})
        full, incremental = reconcile(s), reconcile(s, incremental=True)
        s.rollback()
    assert full.started_after_horizon is None and incremental.started_after_horizon is not None
    return full, incremental


def test_incremental_checks_only_what_changed_and_finds_tampering_there(small_book: SmallBook) -> None:
    old, payer, payee = small_book.customer(), small_book.customer(), small_book.customer()
    fund(small_book.sessions, small_book.admin, old.account, 500)
    fund(small_book.sessions, small_book.admin, payer.account, 1_000)
    mark = _checkpoint(small_book.sessions)

    paid = _pay(small_book.sessions, payer, payee, 300)
    held = _pay(small_book.sessions, payer, payee, 50, hold=True)
    with small_book.sessions() as s:
        clean = reconcile(s, incremental=True)
        everything = reconcile(s)
    assert clean.ok, clean.problems
    assert clean.started_after_horizon == mark.horizon and clean.horizon >= mark.horizon
    # The two new transfers and their two accounts, not the whole book.
    assert (clean.transfers_checked, clean.accounts_checked) == (2, 2)
    assert everything.transfers_checked > 2 and everything.accounts_checked > 2

    # A new transfer's account: its balance moved off the ledger.
    full, incremental = _both(
        small_book.sessions, "UPDATE accounts SET balance = balance + 1 WHERE id = :a", a=payee.account.id
    )
    assert any(f"account {payee.account.id}: balance 301 != ledger sum 300" in p for p in full.problems)
    assert any(
        f"account {payee.account.id}: balance 301 != its newest entry's balance_after 300" in p
        for p in incremental.problems
    )

    # A new entry rewritten with its account's balance to match: the chain breaks there.
    full, incremental = _both(
        small_book.sessions,
        "UPDATE ledger_entries SET amount = amount + 7, balance_after = balance_after + 7"
        " WHERE transfer_id = :t AND account_id = :a;"
        " UPDATE accounts SET balance = balance + 7 WHERE id = :a",
        t=paid,
        a=payee.account.id,
    )
    assert not full.ok and not incremental.ok
    assert any("entries, debit -300, credit 307" in p for p in incremental.problems)
    assert any("ledger sums to 7" in p for p in incremental.problems)

    # The newest entry's balance_after alone: the chain finds it (the full pass's sum does not look there).
    full, incremental = _both(
        small_book.sessions,
        "UPDATE ledger_entries SET balance_after = balance_after + 1 WHERE transfer_id = :t AND account_id = :a",
        t=paid,
        a=payer.account.id,
    )
    assert any("less amount -300 != the entry before's 1000" in p for p in incremental.problems)
    assert any(f"account {payer.account.id}: balance 700 != its newest entry's" in p for p in full.problems)

    # The held transfer's usage and held amount.
    full, incremental = _both(
        small_book.sessions, "UPDATE accounts SET held_amount = held_amount + 5 WHERE id = :a", a=payer.account.id
    )
    for report in (full, incremental):
        assert any(f"account {payer.account.id}: held 55 != sum of its HELD transfers 50" in p for p in report.problems)
    full, incremental = _both(
        small_book.sessions, "UPDATE account_usage SET used = used + 1 WHERE account_id = :a", a=payer.account.id
    )
    for report in (full, incremental):
        assert any(
            f"account {payer.account.id}: DAY use from" in p and "its transfers make 350" in p for p in report.problems
        )
    assert held

    # An account nobody touched since the checkpoint: the full pass finds it, the incremental
    # pass does not look there (that is the point of it).
    full, incremental = _both(
        small_book.sessions, "UPDATE accounts SET balance = balance + 1 WHERE id = :a", a=old.account.id
    )
    assert any(f"account {old.account.id}: balance 501 != ledger sum 500" in p for p in full.problems)
    assert incremental.ok, incremental.problems


def test_a_checkpoint_ahead_of_the_snapshot_is_refused(small_book: SmallBook) -> None:
    fund(small_book.sessions, small_book.admin, small_book.customer().account, 10)
    with small_book.sessions.begin() as s:
        s.execute(
            text(
                "INSERT INTO reconcile_checkpoints (horizon, full_pass, accounts_checked, transfers_checked)"
                " VALUES (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000, true, 0, 0)"
            )
        )
        report = reconcile(s, incremental=True)
        s.rollback()
    assert not report.ok and "ahead of this snapshot" in report.problems[0]


def test_incremental_without_a_checkpoint_is_a_full_pass(small_book: SmallBook) -> None:
    fund(small_book.sessions, small_book.admin, small_book.customer().account, 10)
    with small_book.sessions.begin() as s:
        s.execute(text("DELETE FROM reconcile_checkpoints"))
        full, incremental = reconcile(s), reconcile(s, incremental=True)
        s.rollback()
    assert full.ok and incremental.ok
    assert incremental.started_after_horizon is None
    assert (incremental.accounts_checked, incremental.transfers_checked) == (
        full.accounts_checked,
        full.transfers_checked,
    )


def test_a_pass_with_problems_records_no_checkpoint(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        assert not record_checkpoint(s, Report(problems=["something"], horizon=1))


def test_reconcile_cli_records_a_checkpoint_and_goes_on_from_it(small_book: SmallBook) -> None:
    payer, payee = small_book.customer(), small_book.customer()
    fund(small_book.sessions, small_book.admin, payer.account, 100)
    full = small_book.cli("reconcile")
    assert full.returncode == 0, full.stderr
    assert "reconcile (full pass)" in full.stdout
    with small_book.sessions() as s:
        mark = s.execute(text("SELECT horizon, full_pass FROM reconcile_checkpoints ORDER BY id DESC LIMIT 1")).one()
    assert mark.full_pass
    _pay(small_book.sessions, payer, payee, 40)
    more = small_book.cli("reconcile", "--incremental")
    assert more.returncode == 0, more.stderr
    assert f"reconcile (changed since transaction {mark.horizon}): 2 accounts, 1 transfers, 0 problem(s)" in more.stdout
    with small_book.sessions() as s:
        latest = s.execute(text("SELECT horizon, full_pass FROM reconcile_checkpoints ORDER BY id DESC LIMIT 1")).one()
    assert latest.horizon > mark.horizon and not latest.full_pass
