"""Atomic batches against real Postgres: they settle all together in one transaction or all fail
(LINKED_FAILED), exactly as an in-memory model says, whatever splits, repeats or races the calls."""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, tuple_

from core.accounts.service import open_account, set_frozen
from core.events import DomainEvent
from core.models import Account, AccountStatus, LedgerEntry, Transfer, TransferStatus
from core.transfers import drain
from core.transfers.batch import BatchItem, accept_batch, prepare_batch
from core.transfers.idempotency import MoneyMovement
from core.transfers.linked import LINKED_FAILED
from core.transfers.routing import partition_of
from core.transfers.settle import settle_batch
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.profiles import examples

PARTITIONS = 4


@dataclass
class Person:
    user: object
    accounts: list[Account]


def person(sessions, make_customer, extra_accounts: int = 1) -> Person:  # type: ignore[no-untyped-def]
    c = make_customer()
    accounts = [c.account]
    for _ in range(extra_accounts):
        with sessions.begin() as s:
            accounts.append(open_account(s, c.user, "USD", None))
    return Person(c.user, accounts)


def submit_batch(sessions, p: Person, items, *, atomic: bool, keys=None) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """items: (source account, destination account, amount); returns the transfers' ids in order."""
    keys = keys or [str(uuid.uuid4()) for _ in items]
    batch = [
        BatchItem(k, MoneyMovement(src.id, dst.id, amount, "USD", None))
        for k, (src, dst, amount) in zip(keys, items, strict=True)
    ]
    with sessions.begin() as s:
        result = accept_batch(s, prepare_batch(s, p.user, batch), user=p.user, atomic=atomic, partitions=PARTITIONS)
    assert not result.refused and all(r.error is None for r in result.items)
    return [r.transfer.id for r in result.items]  # type: ignore[union-attr]


def submit_one(sessions, p: Person, src: Account, dst: Account, amount: int, key: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return submit_transfer(
            s,
            user=p.user,  # type: ignore[arg-type]
            idempotency_key=key,
            movement=MoneyMovement(src.id, dst.id, amount, "USD", None),
            partitions=PARTITIONS,
        ).transfer.id


def set_status(sessions, admin_user, account_id: uuid.UUID, frozen: bool) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        now_frozen = s.get_one(Account, account_id).status == AccountStatus.FROZEN
    if now_frozen != frozen:
        with sessions.begin() as s:
            set_frozen(s, account_id, frozen=frozen, admin_id=admin_user.id, reason="test", request_id=None)


# ---- the model test -------------------------------------------------------------------------

PEOPLE = 3


@pytest.fixture
def cast(sessions, make_customer) -> list[Person]:  # type: ignore[no-untyped-def]
    """The people every example of the model test reuses: argon2 makes customers slow."""
    return [person(sessions, make_customer) for _ in range(PEOPLE)]


op = st.tuples(
    st.sampled_from(["single", "batch", "atomic"]),
    st.integers(0, PEOPLE - 1),  # who sends it
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2 * PEOPLE - 1), st.integers(1, 300)), min_size=1, max_size=4),
    st.booleans(),  # sent again with the same keys (a retry): replays, nothing new
)


@pytest.mark.commits  # accept order is created_at, now() of each transaction
@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(op, min_size=1, max_size=10),
    frozen=st.lists(st.booleans(), min_size=2 * PEOPLE, max_size=2 * PEOPLE),
    extra=st.lists(st.integers(0, 500), min_size=2 * PEOPLE, max_size=2 * PEOPLE),
    cut=st.integers(0, 30),
)
def test_atomic_groups_settle_as_the_model_says(  # type: ignore[no-untyped-def]
    sessions, cast, admin_user, ops, frozen, extra, cut
) -> None:
    """Singles, plain batches and atomic batches, with insufficient funds, frozen accounts and
    retries, settled in two calls cut anywhere (through a group too) and then redelivered."""
    people = cast
    accounts = [a for p in people for a in p.accounts]  # account k belongs to people[k // 2]
    for a in accounts:
        set_status(sessions, admin_user, a.id, False)
    for a, amount in zip(accounts, extra, strict=True):
        if amount:
            fund(sessions, admin_user, a, amount)
    opening = [balance(sessions, a.id) for a in accounts]

    ids: list[uuid.UUID] = []
    units: list[list[uuid.UUID]] = []  # what the model applies all-or-nothing, in accept order
    for kind, who, raw, again in ops:
        p = people[who]
        items = [(p.accounts[which], accounts[dst], amount) for which, dst, amount in raw]
        items = [i for i in items if i[0].id != i[1].id][: 1 if kind == "single" else None]
        if not items:
            continue
        keys = [str(uuid.uuid4()) for _ in items]
        for attempt in range(2 if again else 1):
            if kind == "single":
                got = [submit_one(sessions, p, *items[0], key=keys[0])]
            else:
                got = submit_batch(sessions, p, items, atomic=kind == "atomic", keys=keys)
            ids += got
            if attempt == 0:
                units += [got] if kind == "atomic" else [[t] for t in got]
    for a, f in zip(accounts, frozen, strict=True):
        if f:
            set_status(sessions, admin_user, a.id, True)  # frozen after acceptance: the worker decides

    # The model: units in accept order; an atomic one applies whole or fails whole.
    index = {a.id: k for k, a in enumerate(accounts)}
    model, expected = list(opening), {}
    with sessions() as s:
        rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_(ids)))}
    for unit in units:
        trial, codes = list(model), {}
        for tid in unit:
            t = rows[tid]
            i, j = index[t.source_account_id], index[t.destination_account_id]
            if frozen[i] or frozen[j]:
                codes[tid] = "ACCOUNT_INACTIVE"
            elif trial[i] < t.amount:
                codes[tid] = "INSUFFICIENT_FUNDS"
            else:
                trial[i] -= t.amount
                trial[j] += t.amount
                codes[tid] = None
                continue
            break
        failed = next((tid for tid in unit if codes.get(tid)), None)
        if failed is None:
            model = trial
            expected.update(codes)
        else:
            expected.update({tid: codes[tid] if tid == failed else LINKED_FAILED for tid in unit})

    with sessions.begin() as s:
        first = settle_batch(s, ids[:cut])
    with sessions.begin() as s:
        second = settle_batch(s, ids)
    assert sorted(o.transfer_id for o in first + second) == sorted(expected)  # each once
    with sessions.begin() as s:
        assert settle_batch(s, ids) == []  # a redelivered batch applies nothing

    assert [balance(sessions, a.id) for a in accounts] == model
    with sessions() as s:
        for tid, code in expected.items():
            t = s.get_one(Transfer, tid)
            assert (t.status, t.failure_code) == (TransferStatus.FAILED if code else TransferStatus.COMPLETED, code)
            entries = s.scalar(select(func.count()).where(LedgerEntry.transfer_id == tid))
            assert entries == (0 if code else 2)


# ---- routing, draining, races ---------------------------------------------------------------


def spanning(sessions, make_customer) -> Person:  # type: ignore[no-untyped-def]
    """A customer with two accounts whose own partitions differ."""
    p = person(sessions, make_customer, extra_accounts=0)
    while len({partition_of(a.id, PARTITIONS) for a in p.accounts}) < 2:
        with sessions.begin() as s:
            p.accounts.append(open_account(s, p.user, "USD", None))  # type: ignore[arg-type]
    parts: dict[int, Account] = {partition_of(a.id, PARTITIONS): a for a in p.accounts}
    p.accounts = list(parts.values())[:2]
    return p


def test_an_atomic_batch_across_partitions_is_drained_and_settled_whole(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = spanning(sessions, make_customer), person(sessions, make_customer, extra_accounts=0)
    a1, a2 = alice.accounts
    fund(sessions, admin_user, a1, 100)
    fund(sessions, admin_user, a2, 100)
    ids = submit_batch(
        sessions, alice, [(a1, bob.accounts[0], 60), (a2, bob.accounts[0], 70), (a1, a2, 40)], atomic=True
    )
    with sessions() as s:
        parts = set(s.scalars(select(Transfer.partition).where(Transfer.id.in_(ids))))
        assert len(parts) == 1  # routed together, although a2's own partition differs
        partition = parts.pop()
        first = s.get_one(Transfer, ids[0])
        # Other tests may leave PENDING transfers in this partition: a limit that reaches only
        # the first of ours still brings the whole group (never split, whatever the limit).
        older = s.scalar(
            select(func.count()).where(
                Transfer.partition == partition,
                Transfer.status == TransferStatus.PENDING,
                tuple_(Transfer.created_at, Transfer.id) < tuple_(first.created_at, first.id),
            )
        )
        batch = drain.next_batch(s, partition, limit=older + 1)
    assert [t for t in batch.transfer_ids if t in ids] == ids
    assert {a1.id, a2.id, bob.accounts[0].id} <= set(batch.account_ids)
    with sessions() as s:
        assert s.get_one(Transfer, ids[0]).batch_id in batch.atomic_batches  # handed to settle_batch
    with sessions.begin() as s:
        settled = settle_batch(s, [ids[1]])  # any one of them brings the whole group
    assert [o.transfer_id for o in settled] == ids
    assert {o.status for o in settled} == {TransferStatus.COMPLETED}
    assert [balance(sessions, a.id) for a in (a1, a2, bob.accounts[0])] == [0, 70, 130]


@pytest.mark.commits  # accept order is created_at, now() of each transaction
def test_one_failing_item_fails_the_whole_group_and_moves_nothing(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = spanning(sessions, make_customer), person(sessions, make_customer, extra_accounts=0)
    a1, a2 = alice.accounts
    b = bob.accounts[0]
    fund(sessions, admin_user, a1, 100)
    fund(sessions, admin_user, a2, 10)
    ids = submit_batch(sessions, alice, [(a1, b, 60), (a2, b, 20), (a1, b, 1)], atomic=True)
    other = submit_one(sessions, alice, a1, b, 100, key=str(uuid.uuid4()))  # accepted after: sees the group undone
    with sessions.begin() as s:
        settled = {o.transfer_id: o for o in settle_batch(s, [*ids, other])}
    assert [(settled[t].status, settled[t].failure_code) for t in ids] == [
        (TransferStatus.FAILED, LINKED_FAILED),
        (TransferStatus.FAILED, "INSUFFICIENT_FUNDS"),
        (TransferStatus.FAILED, LINKED_FAILED),
    ]
    assert settled[other].status == TransferStatus.COMPLETED
    assert [balance(sessions, a.id) for a in (a1, a2, b)] == [0, 10, 100]
    with sessions() as s:
        assert s.scalar(select(func.count()).where(LedgerEntry.transfer_id.in_(ids))) == 0
        failed_events = s.scalars(select(DomainEvent.data).where(DomainEvent.event_type == "transfer.failed")).all()
        # Other tests share the outbox (some with hand-made events): only this group's rows count.
        mine = {str(t) for t in ids}
        codes = {d["id"]: d["failure_code"] for d in failed_events if d.get("id") in mine}
        assert sorted(codes.values()) == sorted([LINKED_FAILED, "INSUFFICIENT_FUNDS", LINKED_FAILED])


@pytest.mark.commits  # threads race on connections of their own
def test_racing_calls_on_parts_of_a_group_settle_it_once_and_whole(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = spanning(sessions, make_customer), person(sessions, make_customer, extra_accounts=0)
    a1, a2 = alice.accounts
    b = bob.accounts[0]
    fund(sessions, admin_user, a1, 1000)
    fund(sessions, admin_user, a2, 1000)
    groups = [submit_batch(sessions, alice, [(a1, b, 10), (a2, b, 10), (a2, a1, 5)] * 2, atomic=True) for _ in range(4)]
    ids = [t for g in groups for t in g]
    settled: list[list[uuid.UUID]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(ids))

    def run(tid: uuid.UUID) -> None:
        try:
            start.wait(10)
            with sessions.begin() as s:
                settled.append([o.transfer_id for o in settle_batch(s, [tid])])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(t for got in settled for t in got) == sorted(ids)  # each exactly once
    for got in (g for g in settled if g):
        assert any(sorted(got) == sorted(g) for g in groups)  # each call settled one whole group
    assert [balance(sessions, a.id) for a in (a1, a2, b)] == [1000 - 80 + 40, 1000 - 80 - 40, 160]


@pytest.mark.commits  # threads race on connections of their own
@pytest.mark.parametrize("atomic", [False, True])
def test_the_same_batch_sent_concurrently_binds_each_key_once(sessions, make_customer, admin_user, atomic) -> None:  # type: ignore[no-untyped-def]
    """Items inserted in key order whatever the request order: overlapping batches never deadlock,
    and every sender gets the same transfers (an atomic one too: a whole replay)."""
    alice, bob = person(sessions, make_customer, extra_accounts=0), person(sessions, make_customer, extra_accounts=0)
    fund(sessions, admin_user, alice.accounts[0], 10_000)
    items = [(alice.accounts[0], bob.accounts[0], n) for n in range(1, 21)]
    keys = [str(uuid.uuid4()) for _ in items]
    orders = [random.Random(seed).sample(range(20), 20) for seed in range(8)]
    answers: list[dict[str, uuid.UUID]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(orders))

    def send(order: list[int]) -> None:
        try:
            start.wait(10)
            got = submit_batch(sessions, alice, [items[i] for i in order], atomic=atomic, keys=[keys[i] for i in order])
            answers.append({keys[i]: t for i, t in zip(order, got, strict=True)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(answers) == len(orders)
    assert all(a == answers[0] for a in answers)  # every sender got the same transfers
    with sessions() as s:
        rows = s.scalars(select(Transfer).where(Transfer.idempotency_key.in_(keys))).all()
    assert len(rows) == 20 and len({r.batch_id for r in rows}) == 1


def _held(sessions, account: Account) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.get_one(Account, account.id).held_amount


@pytest.mark.parametrize("payable", [True, False])
def test_a_hold_inside_an_atomic_batch_is_reserved_with_it_or_not_at_all(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user, payable: bool
) -> None:
    alice, bob = person(sessions, make_customer, extra_accounts=0), person(sessions, make_customer, extra_accounts=0)
    a, b = alice.accounts[0], bob.accounts[0]
    fund(sessions, admin_user, a, 100)
    items = [
        BatchItem(str(uuid.uuid4()), MoneyMovement(a.id, b.id, 40, "USD", None), hold=True),
        BatchItem(str(uuid.uuid4()), MoneyMovement(a.id, b.id, 60 if payable else 61, "USD", None)),
    ]
    with sessions.begin() as s:
        result = accept_batch(
            s, prepare_batch(s, alice.user, items), user=alice.user, atomic=True, partitions=PARTITIONS
        )
    ids = [r.transfer.id for r in result.items]  # type: ignore[union-attr]
    with sessions.begin() as s:
        settled = {o.transfer_id: o for o in settle_batch(s, ids)}
    if payable:  # the hold counts against what the plain item may spend: 40 held + 60 = 100
        assert [settled[t].status for t in ids] == [TransferStatus.HELD, TransferStatus.COMPLETED]
        assert (balance(sessions, a.id), _held(sessions, a)) == (40, 40)
    else:  # 40 + 61 > 100: the group fails whole and the hold is undone with it
        assert [(settled[t].status, settled[t].failure_code) for t in ids] == [
            (TransferStatus.FAILED, LINKED_FAILED),
            (TransferStatus.FAILED, "INSUFFICIENT_FUNDS"),
        ]
        assert (balance(sessions, a.id), _held(sessions, a)) == (100, 0)
