"""Batched settlement against real Postgres: a batch gives exactly what one-by-one settlement in
accept order gives, applies nothing twice, and loses nothing when its worker dies mid-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, tuple_, update

from core.accounts.service import set_frozen
from core.errors import TransferNotHeld
from core.models import Account, AccountStatus, LedgerEntry, Transfer, TransferStatus
from core.reconcile import reconcile
from core.transfers import drain
from core.transfers import holds as holds_service
from core.transfers.idempotency import MoneyMovement
from core.transfers.settle import settle_batch
from core.transfers.submit import submit_transfer
from tests.factories import Customer, balance, fund
from tests.profiles import examples

ROOT = Path(__file__).resolve().parents[2]
N = 4


@pytest.fixture
def people(make_customer):  # type: ignore[no-untyped-def]
    """N customers that every example of one test reuses: argon2 makes customers slow."""
    return [make_customer() for _ in range(N)]


def submit(sessions, src, dst, amount, key=None):  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return submit_transfer(
            s,
            user=src.user,
            idempotency_key=key or str(uuid.uuid4()),
            movement=MoneyMovement(src.account.id, dst.account.id, amount, "USD", None),
            partitions=4,
        ).transfer.id


def freeze(sessions, admin_user, customer, frozen):  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        set_frozen(s, customer.account.id, frozen=frozen, admin_id=admin_user.id, reason="test", request_id=None)


transfer = st.tuples(st.integers(0, N - 1), st.integers(0, N - 1), st.integers(1, 300), st.booleans())


@pytest.mark.commits  # accept order is created_at, now() of each transaction
@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    transfers=st.lists(transfer, min_size=1, max_size=25),
    frozen=st.lists(st.booleans(), min_size=N, max_size=N),
    extra=st.lists(st.integers(0, 400), min_size=N, max_size=N),
    cut=st.integers(1, 25),
)
def test_a_batch_equals_one_by_one_in_accept_order(  # type: ignore[no-untyped-def]
    sessions, people, admin_user, transfers, frozen, extra, cut
) -> None:
    """Insufficient funds, frozen accounts, duplicate keys and crossing pairs, in random batches."""
    ps = people
    for p in ps:  # an earlier (failed, shrinking) example may have left one frozen
        with sessions() as s:
            left_frozen = s.get_one(Account, p.account.id).status == AccountStatus.FROZEN
        if left_frozen:
            freeze(sessions, admin_user, p, False)
    for p, amount in zip(ps, extra, strict=True):
        if amount:
            fund(sessions, admin_user, p.account, amount)
    opening = [balance(sessions, p.account.id) for p in ps]

    ids: list[uuid.UUID] = []
    last_key = None
    for i, j, amount, repeat in transfers:
        if i == j:
            continue
        # repeat: the client retries the previous request with the same key and body.
        if repeat and last_key and last_key[1:] == (i, j, amount):
            ids.append(submit(sessions, ps[i], ps[j], amount, key=last_key[0]))
            continue
        key = str(uuid.uuid4())
        ids.append(submit(sessions, ps[i], ps[j], amount, key=key))
        last_key = (key, i, j, amount)
    for p, f in zip(ps, frozen, strict=True):
        if f:
            freeze(sessions, admin_user, p, True)  # frozen after acceptance: the worker decides

    # The model: one by one in accept order, each transfer once.
    model, expected = list(opening), {}
    for tid in dict.fromkeys(ids):  # accept order, duplicates collapsed
        with sessions() as s:
            t = s.get_one(Transfer, tid)
        i = next(k for k, p in enumerate(ps) if p.account.id == t.source_account_id)
        j = next(k for k, p in enumerate(ps) if p.account.id == t.destination_account_id)
        if frozen[i] or frozen[j]:
            expected[tid] = "ACCOUNT_INACTIVE"
        elif model[i] < t.amount:
            expected[tid] = "INSUFFICIENT_FUNDS"
        else:
            model[i] -= t.amount
            model[j] += t.amount
            expected[tid] = None

    # Settled in two batches (the cut) with the duplicate ids passed twice.
    with sessions.begin() as s:
        first = settle_batch(s, ids[:cut])
    with sessions.begin() as s:
        second = settle_batch(s, ids)
    assert len(first) + len(second) == len(expected)
    with sessions.begin() as s:
        assert settle_batch(s, ids) == []  # a redelivered batch applies nothing

    assert [balance(sessions, p.account.id) for p in ps] == model
    with sessions() as s:
        for tid, code in expected.items():
            t = s.get_one(Transfer, tid)
            assert t.status == (TransferStatus.FAILED if code else TransferStatus.COMPLETED)
            assert t.failure_code == code
            entries = s.scalar(select(func.count()).where(LedgerEntry.transfer_id == tid))
            assert entries == (0 if code else 2)
    # Every entry's balance_after follows the account's own history in accept order.
    with sessions() as s:
        for p, start in zip(ps, opening, strict=True):
            rows = s.execute(
                select(LedgerEntry.amount, LedgerEntry.balance_after)
                .join(Transfer, Transfer.id == LedgerEntry.transfer_id)
                .where(LedgerEntry.account_id == p.account.id, LedgerEntry.transfer_id.in_(list(expected)))
                .order_by(Transfer.created_at, Transfer.id)
            ).all()
            running = start
            for amount, after in rows:
                running += amount
                assert after == running


@pytest.mark.commits  # batches race in threads, each on a connection of its own
def test_crossing_batches_in_parallel_never_deadlock_or_double_apply(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    ps = [make_customer() for _ in range(4)]
    for p in ps:
        fund(sessions, admin_user, p.account, 10_000)
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b] * 5
    ids = [submit(sessions, ps[a], ps[b], 7) for a, b in pairs]
    batches = [ids[k::3] for k in range(3)] + [list(reversed(ids))]  # overlapping and crossing
    errors: list[BaseException] = []
    settled: list[uuid.UUID] = []
    lock = threading.Lock()

    def run(batch: list[uuid.UUID]) -> None:
        try:
            with sessions.begin() as s:
                got = settle_batch(s, batch)
            with lock:
                settled.extend(o.transfer_id for o in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(settled) == sorted(ids)  # each exactly once, whichever batch took it
    assert sum(balance(sessions, p.account.id) for p in ps) == 40_000
    with sessions() as s:
        assert s.scalar(select(func.count()).where(LedgerEntry.transfer_id.in_(ids))) == 2 * len(ids)


def chained(entries: list[dict], balance_now: int) -> bool:  # type: ignore[type-arg]
    """Newest first: each entry's balance_after minus its amount is the next (older) one's."""
    after = balance_now
    for e in entries:
        if e["balance_after"] != after:
            return False
        after -= e["amount"]
    return after == 0  # every account here started empty


def test_one_batchs_entries_list_in_the_order_they_were_applied(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    """One settlement's entries share created_at: the list still goes newest first, as applied."""
    from tests.integration.test_api import login

    a, b = make_customer(), make_customer()
    fund(sessions, admin_user, a.account, 10_000)
    ids = [submit(sessions, a, b, amount) for amount in (100, 200, 300, 400, 500, 600)]
    with sessions.begin() as s:
        applied = [o.amount for o in settle_batch(s, ids)]  # accept order (created_at, then id)
    h = login(client, a.email)
    entries = client.get(f"/api/v1/accounts/{a.account.id}/entries", headers=h).json["items"]
    assert [e["amount"] for e in entries] == [-x for x in reversed(applied)] + [10_000]
    assert chained(entries, balance(sessions, a.account.id))
    paged, cursor = [], None
    while True:  # the cursor walks the same order
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = client.get(f"/api/v1/accounts/{a.account.id}/entries{query}", headers=h).json
        paged += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    assert paged == entries


@pytest.mark.commits  # batches in parallel on their own connections
def test_entries_chain_after_crossing_batches_in_parallel(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    """Concurrent batches wait for each other's account locks: per account, the entries (listed and
    in a statement) follow the order they were applied in, whatever each transaction's start."""
    from tests.integration.test_api import login

    ps = [make_customer() for _ in range(4)]
    for p in ps:
        fund(sessions, admin_user, p.account, 10_000)
    ids = [submit(sessions, ps[x], ps[y], 1 + (x * 4 + y)) for x in range(4) for y in range(4) if x != y]
    ids += [submit(sessions, ps[x], ps[y], 3) for x in range(4) for y in range(4) if x != y]
    batches = [ids[k::3] for k in range(3)] + [list(reversed(ids))]
    barrier = threading.Barrier(len(batches))

    def run(batch: list[uuid.UUID]) -> None:
        with sessions.begin() as s:
            s.execute(text("SELECT 1"))  # each transaction starts before it waits for locks
            barrier.wait(10)
            settle_batch(s, batch)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for p in ps:
        h = login(client, p.email)
        entries = client.get(f"/api/v1/accounts/{p.account.id}/entries?limit=100", headers=h).json["items"]
        assert len(entries) == 1 + 2 * 6 and chained(entries, balance(sessions, p.account.id))
        stmt = client.get(
            f"/api/v1/accounts/{p.account.id}/statement", query_string={"from": start, "to": end}, headers=h
        ).json
        assert [(e["id"], e["balance_after"]) for e in reversed(stmt["entries"])] == [
            (e["id"], e["balance_after"]) for e in entries
        ]


@pytest.mark.commits  # the partition lock is taken by one connection and refused to another
def test_one_drainer_per_partition(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as a:
        assert drain.claim_partition(a, 3)
        with sessions.begin() as b:
            assert not drain.claim_partition(b, 3)  # taken: the holder looks again after its commit
            assert drain.claim_partition(b, 4)
    with sessions.begin() as c:
        assert drain.claim_partition(c, 3)  # released with the transaction


@pytest.mark.commits  # accept order is created_at, now() of each transaction
def test_next_batch_is_the_partitions_pending_in_accept_order(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    ids = [submit(sessions, alice, bob, 1) for _ in range(5)]
    with sessions() as s:
        first = s.get_one(Transfer, ids[0])
        # Other tests may leave PENDING transfers in this partition, ahead of ours.
        older = s.scalar(
            select(func.count()).where(
                Transfer.partition == first.partition,
                Transfer.status == TransferStatus.PENDING,
                tuple_(Transfer.created_at, Transfer.id) < tuple_(first.created_at, first.id),
            )
        )
        batch = drain.next_batch(s, first.partition, limit=older + len(ids))
    mine = [t for t in batch.transfer_ids if t in ids]
    assert mine == ids
    assert {alice.account.id, bob.account.id} <= set(batch.account_ids)
    assert batch.account_ids == sorted(batch.account_ids)


KILLED_WORKER = """
import sys, uuid, time
from core.config import Settings
from core.db import make_engine, make_session_factory
from core.transfers.settle import settle_batch
sessions = make_session_factory(make_engine(Settings()))
ids = [uuid.UUID(x) for x in sys.argv[1:]]
with sessions.begin() as s:
    settled = settle_batch(s, ids)
    print(len(settled), flush=True)  # applied, not committed
    time.sleep(60)
"""


@pytest.mark.commits  # a worker process settles on a connection of its own and is killed
def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    ids = [submit(sessions, alice, bob, 100) for _ in range(5)]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, *map(str, ids)], cwd=ROOT, stdout=subprocess.PIPE, env=os.environ.copy()
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"5"  # the batch is applied inside its transaction...
    os.kill(proc.pid, signal.SIGKILL)  # ...when the worker dies
    proc.wait(10)
    proc.stdout.close()
    with sessions() as s:
        statuses = set(s.scalars(select(Transfer.status).where(Transfer.id.in_(ids))))
    assert statuses == {TransferStatus.PENDING}  # nothing half-done
    assert balance(sessions, alice.account.id) == 1000
    with sessions.begin() as s:  # the redelivered nudge drains them: each exactly once
        assert len(settle_batch(s, ids)) == 5
    assert balance(sessions, alice.account.id) == 500
    assert balance(sessions, bob.account.id) == 500


# ---- holds: the same model grows to holds, captures, voids and expiries --------------------

# Rounds: some transfers and holds are sent and settled as one batch, then some of the holds
# sent so far are captured (a percent of the amount), voided or expired.
send = st.tuples(st.integers(0, N - 1), st.integers(1, N - 1), st.integers(1, 300), st.booleans())
end = st.tuples(st.sampled_from(["capture", "void", "expire"]), st.integers(0, 30), st.integers(1, 100))
hold_round = st.tuples(st.lists(send, min_size=1, max_size=6), st.lists(end, max_size=4))


@pytest.fixture
def sink(make_customer):  # type: ignore[no-untyped-def]
    """Where an example's extra balance goes."""
    return make_customer()


def reset(sessions, sink, admin_user, p, target: int) -> None:  # type: ignore[no-untyped-def]
    """Start an example from ``target``, no open hold, active: small balances make holds matter."""
    with sessions() as s:
        account = s.get_one(Account, p.account.id)
        frozen = account.status == AccountStatus.FROZEN
        open_holds = list(
            s.scalars(
                select(Transfer.id).where(
                    Transfer.source_account_id == p.account.id, Transfer.status == TransferStatus.HELD
                )
            )
        )
    if frozen:
        freeze(sessions, admin_user, p, False)
    for tid in open_holds:
        with sessions.begin() as s:
            holds_service.void(s, user=admin_user, transfer_id=tid, idempotency_key=str(uuid.uuid4()))
    now = balance(sessions, p.account.id)
    if now > target:
        tid = submit(sessions, p, sink, now - target)
        with sessions.begin() as s:
            settle_batch(s, [tid])
    elif now < target:
        fund(sessions, admin_user, p.account, target - now)
    assert balance(sessions, p.account.id) == target


def _books_reconcile(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        report = reconcile(s)
    assert report.ok, report.problems


@pytest.mark.commits  # accept order is created_at, now() of each transaction
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(hold_round, min_size=1, max_size=5), extra=st.lists(st.integers(0, 400), min_size=N, max_size=N))
def test_holds_captures_voids_and_expiries_follow_the_model(  # type: ignore[no-untyped-def]
    sessions, people, sink, admin_user, rounds, extra
) -> None:
    """Any sequence gives the model's balances, available balances and statuses; books reconcile after each step."""
    ps = people
    for p, amount in zip(ps, extra, strict=True):
        reset(sessions, sink, admin_user, p, amount)
    bal, held = list(extra), [0] * N

    status: dict[uuid.UUID, TransferStatus] = {}
    sent: dict[uuid.UUID, tuple[int, int, int, bool]] = {}
    holds: list[uuid.UUID] = []  # every hold sent, in send order: the ends pick one

    def check() -> None:
        with sessions() as s:
            rows = [s.get_one(Account, p.account.id) for p in ps]
            assert [a.balance for a in rows] == bal
            assert [a.balance - a.held_amount for a in rows] == [b - h for b, h in zip(bal, held, strict=True)]
            got = dict(s.execute(select(Transfer.id, Transfer.status).where(Transfer.id.in_(list(status)))).all())
        assert got == status
        _books_reconcile(sessions)

    for sends, ends in rounds:
        batch = []
        for i, d, amount, hold in sends:
            j = (i + d) % N
            with sessions.begin() as s:
                tid = submit_transfer(
                    s,
                    user=ps[i].user,
                    idempotency_key=str(uuid.uuid4()),
                    movement=MoneyMovement(ps[i].account.id, ps[j].account.id, amount, "USD", None, hold=hold),
                    partitions=4,
                ).transfer.id
            sent[tid] = (i, j, amount, hold)
            batch.append(tid)
            holds += [tid] if hold else []
        with sessions.begin() as s:
            settle_batch(s, batch)
        for tid in batch:  # the model: in accept order, against available balances
            i, j, amount, hold = sent[tid]
            if bal[i] - held[i] < amount:
                status[tid] = TransferStatus.FAILED
            elif hold:
                held[i] += amount
                status[tid] = TransferStatus.HELD
            else:
                bal[i] -= amount
                bal[j] += amount
                status[tid] = TransferStatus.COMPLETED
        check()
        for kind, k, percent in ends:
            tid = holds[k % len(holds)] if holds else batch[0]
            i, j, amount, _ = sent[tid]
            open_hold = status[tid] == TransferStatus.HELD
            if kind == "expire":  # its expiry passes, then the sweep runs twice: the second finds nothing
                with sessions.begin() as s:
                    past = datetime.now(UTC) - timedelta(seconds=1)
                    s.execute(update(Transfer).where(Transfer.id == tid, Transfer.hold).values(hold_expires_at=past))
                for _ in range(2):
                    with sessions.begin() as s:
                        expired = holds_service.expire_due(s, now=datetime.now(UTC))
                    assert (tid in expired) == open_hold
                    if open_hold:
                        held[i] -= amount
                        status[tid] = TransferStatus.EXPIRED
                        open_hold = False
                check()
                continue
            part = max(1, amount * percent // 100)
            try:
                with sessions.begin() as s:
                    if kind == "capture":
                        holds_service.capture(
                            s, user=ps[i].user, transfer_id=tid, amount=part, idempotency_key=str(uuid.uuid4())
                        )
                    else:  # the destination's owner voids
                        holds_service.void(s, user=ps[j].user, transfer_id=tid, idempotency_key=str(uuid.uuid4()))
            except TransferNotHeld:
                assert not open_hold
            else:
                assert open_hold
                held[i] -= amount
                if kind == "capture":
                    bal[i] -= part
                    bal[j] += part
                status[tid] = TransferStatus.COMPLETED if kind == "capture" else TransferStatus.VOIDED
            check()


def test_a_batch_writes_the_events_transfer_events_gives(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    """Postgres builds a batch's outbox events from the updated rows (settle._FINISH); they are
    the events ``transfer_events`` gives for each stored transfer: completed, failed (no money,
    no account events), held, between two customers and between one customer's own accounts."""
    from core.events import DomainEvent, transfer_events

    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    with sessions.begin() as s:
        second = Account(user_id=alice.user.id, currency="USD", status=AccountStatus.ACTIVE)
        s.add(second)
    own = Customer(alice.user, second, alice.email)
    alone = submit(sessions, alice, bob, 100)
    batched = [submit(sessions, alice, bob, 10 + i) for i in range(3)]
    too_much = submit(sessions, alice, bob, 5000)
    to_herself = submit(sessions, alice, own, 7)
    with sessions.begin() as s:
        held = submit_transfer(
            s, user=alice.user, idempotency_key=str(uuid.uuid4()), partitions=4,
            movement=MoneyMovement(alice.account.id, bob.account.id, 20, "USD", None, True, 3600),
        ).transfer.id  # fmt: skip
    with sessions.begin() as s:
        assert len(settle_batch(s, [alone])) == 1
    with sessions.begin() as s:
        assert len(settle_batch(s, [*batched, too_much, to_herself, held])) == 6
    with sessions() as s:
        for transfer_id in (alone, *batched, too_much, to_herself, held):
            t = s.get_one(Transfer, transfer_id)
            stored = s.scalars(
                select(DomainEvent).where(DomainEvent.data["id"].astext == str(t.id)).order_by(DomainEvent.sequence)
            ).all()
            settled = [e for e in stored if e.event_type != "transfer.pending"]
            after = None
            if t.status == TransferStatus.COMPLETED:
                entries = {e.account_id: e.balance_after for e in s.scalars(
                    select(LedgerEntry).where(LedgerEntry.transfer_id == t.id))}  # fmt: skip
                after = (entries[t.source_account_id], entries[t.destination_account_id])
            destination_owner = alice.user.id if transfer_id == to_herself else bob.user.id
            expected = transfer_events(
                t, source_owner=alice.user.id, destination_owner=destination_owner, balances_after=after
            )
            assert [(e.event_type, e.data, e.owner_ids) for e in settled] == [
                (e["event_type"], e["data"], e["owner_ids"]) for e in expected
            ]
        assert s.get_one(Transfer, too_much).failure_code == "INSUFFICIENT_FUNDS"
        assert s.get_one(Transfer, held).status == TransferStatus.HELD
    assert balance(sessions, alice.account.id) == 1000 - 100 - 10 - 11 - 12 - 7


@pytest.mark.parametrize("microsecond", [0, 1, 123456, 999999])
def test_the_sql_payload_is_transfer_data(sessions, make_customer, microsecond) -> None:  # type: ignore[no-untyped-def]
    """events.transfer_data_sql gives the JSON transfer_data gives, timestamps included (Python's
    isoformat drops a zero fraction)."""
    from core.events import transfer_data, transfer_data_sql

    alice, bob = make_customer(), make_customer()
    transfer_id = submit(sessions, alice, bob, 5)
    at = datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=UTC)
    with sessions.begin() as s:
        s.execute(update(Transfer).where(Transfer.id == transfer_id).values(
            created_at=at, updated_at=at + timedelta(seconds=1), completed_at=None,
            hold=True, hold_expires_at=at + timedelta(hours=1), reference="ref \"quoted\" é"))  # fmt: skip
    with sessions() as s:
        t = s.get_one(Transfer, transfer_id)
        from_sql = s.scalar(select(text(transfer_data_sql("t"))).select_from(text("transfers t")).where(
            text("t.id = :id")).params(id=transfer_id))  # fmt: skip
        assert from_sql == transfer_data(t)
        assert from_sql["created_at"] == at.isoformat()
