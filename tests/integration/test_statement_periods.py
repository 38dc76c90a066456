"""Statement periods are cut in apply order (seq), also where concurrent settlements wrote entries
whose created_at (their transaction's start) is out of that order: opening + the entries chain to
every balance_after, and periods that meet at an instant join exactly."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from core import ledger
from core.models import Account, LedgerEntry
from core.statements import Statement, statement
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.settling import settle_transfer

pytestmark = pytest.mark.commits  # concurrent settlements, on their own connections


def submit(sessions, payer, payee_account, amount: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return submit_transfer(
            s,
            user=payer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(payer.account.id, payee_account.id, amount, "USD", None),
        ).transfer.id


def read(sessions, account_id: uuid.UUID, start: datetime, end: datetime, page: int | None = None) -> Statement:  # type: ignore[no-untyped-def]
    """The whole statement, following next_cursor; each page in a snapshot of its own, as the API reads them."""
    pages: list[Statement] = []
    while not pages or pages[-1].next_cursor:
        with sessions() as s:
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            account = s.get_one(Account, account_id)
            cursor = pages[-1].next_cursor if pages else None
            pages.append(statement(s, account, start, end, cursor=cursor, max_entries=page))
    assert {p.opening_balance for p in pages} == {pages[0].opening_balance}
    assert all(p.closing_balance is None for p in pages[:-1])
    last = pages[-1]
    return Statement(
        last.account_id, last.currency, last.start, last.end, pages[0].opening_balance, last.closing_balance,
        [e for p in pages for e in p.entries], None,
    )  # fmt: skip


def assert_chains(stmt: Statement) -> None:
    """opening + each entry's amount is its balance_after, and the last one is the closing balance."""
    running = stmt.opening_balance
    for e in stmt.entries:
        running += e.amount
        assert e.balance_after == running, "balance_after does not chain from the opening balance"
    assert stmt.closing_balance == running


def entries_by_apply_order(sessions, account_id: uuid.UUID) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(
            s.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.seq))
        )


def test_an_entry_applied_after_one_created_later_stays_in_apply_order(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    """A started first, B settled into the account and committed, then A settled: A's created_at
    is before B's but it was applied after B. A period ending between them holds neither (both
    were applied after its cut at B), the next one holds B then A."""
    alice, p1, p2 = make_customer(), make_customer(), make_customer()
    for who, amount in ((alice, 500), (p1, 1_000), (p2, 1_000)):
        fund(sessions, admin_user, who.account, amount)
    t_a, t_b = submit(sessions, p1, alice.account, 100), submit(sessions, p2, alice.account, 10)
    early = sessions()
    early.begin()
    a_started = early.scalar(select(func.now()))  # A's transaction has begun: its entries' created_at
    time.sleep(0.01)
    with sessions.begin() as s:
        settle_transfer(s, t_b)
    settle_transfer(early, t_a)
    early.commit()
    early.close()

    *_, b, a = entries_by_apply_order(sessions, alice.account.id)
    assert (b.transfer_id, a.transfer_id) == (t_b, t_a) and a.created_at == a_started < b.created_at
    # Both period cuts fall at B, the first entry applied of those created at or after A's start.
    begin, boundary, end = a.created_at, b.created_at, b.created_at + timedelta(seconds=1)
    before, after = read(sessions, alice.account.id, begin, boundary), read(sessions, alice.account.id, boundary, end)
    assert_chains(before)
    assert_chains(after)
    assert [e.transfer_id for e in after.entries] == [t_b, t_a]
    assert before.entries == [] and before.closing_balance == after.opening_balance == 500
    assert after.closing_balance == 610 == balance(sessions, alice.account.id)
    # Between A's created_at and B's, the ledger's cut is still at B: the balance then is 500.
    with sessions() as s:
        assert ledger.balance_at(s, alice.account.id, a.created_at + timedelta(microseconds=1)) == 500
        assert ledger.balance_at(s, alice.account.id, end) == 610


def test_periods_join_exactly_while_settlements_run_concurrently(
    sessions, make_customer, admin_user, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Threads settle payments into one account (their transactions interleave on its row lock)
    while statements are cut at the instant the test began, in pages; every read chains, and
    afterwards periods meeting at any instant join exactly and cover every entry once."""
    alice = make_customer()
    payers = [make_customer() for _ in range(4)]
    for payer in payers:
        fund(sessions, admin_user, payer.account, 100_000)
    began = datetime.now(UTC)
    fund(sessions, admin_user, alice.account, 1_000)
    transfers = {
        payer.account.id: [submit(sessions, payer, alice.account, n + 1) for n in range(12)] for payer in payers
    }
    stop, failures = threading.Event(), []

    def settle(ids: list[uuid.UUID]) -> None:
        try:
            for transfer_id in ids:
                with sessions.begin() as s:
                    s.execute(select(func.now()))  # the entry's created_at: before the lock wait
                    time.sleep(random.uniform(0, 0.003))
                    settle_transfer(s, transfer_id)
        except BaseException as error:  # reported by the test
            failures.append(error)

    def cut_statements() -> None:
        try:
            while not stop.is_set():
                now = datetime.now(UTC)
                for start, end in ((began, now), (began, now + timedelta(hours=1)), (now - timedelta(seconds=1), now)):
                    assert_chains(read(sessions, alice.account.id, start, end, page=5))
        except BaseException as error:  # reported by the test
            failures.append(error)

    reader = threading.Thread(target=cut_statements)
    reader.start()
    settlers = [threading.Thread(target=settle, args=(ids,)) for ids in transfers.values()]
    for t in settlers:
        t.start()
    for t in settlers:
        t.join(timeout=120)
    stop.set()
    reader.join(timeout=120)
    assert not failures, failures

    entries = entries_by_apply_order(sessions, alice.account.id)
    assert len(entries) == 1 + 4 * 12
    # The interleaving this is about happened: transactions started in one order, applied in another.
    assert any(y.created_at < x.created_at for x, y in itertools.pairwise(entries))
    end = max(e.created_at for e in entries) + timedelta(seconds=1)
    # Cut at every entry's created_at, between them, and at the two ends.
    instants = sorted(
        {began, end, *(e.created_at for e in entries), *(e.created_at + timedelta(microseconds=1) for e in entries)}
    )
    whole = read(sessions, alice.account.id, began, end)
    assert_chains(whole)
    assert [e.id for e in whole.entries] == [e.id for e in entries]
    assert whole.opening_balance == 0 and whole.closing_balance == balance(sessions, alice.account.id)
    # The cut is the first entry in apply order created at or after the instant, found by either
    # of its two ways (a walk of 512 entries covers this history; of 3, not).
    with sessions() as s:
        for walk in (512, 3):
            monkeypatch.setattr(ledger, "_WALK", walk)
            for instant in instants:
                expected = min((e.seq for e in entries if e.created_at >= instant), default=None)
                assert ledger.cut(s, alice.account.id, instant) == expected
    for boundary in instants[1:-1]:
        first, second = (
            read(sessions, alice.account.id, began, boundary, page=7),
            read(sessions, alice.account.id, boundary, end),
        )
        assert_chains(first)
        assert_chains(second)
        assert first.closing_balance == second.opening_balance
        assert [e.id for e in first.entries + second.entries] == [e.id for e in entries]
