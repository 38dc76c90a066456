"""Holds under concurrency, real threads on the same rows in real Postgres: 50 captures of one
hold, 50 duplicates of one capture, and capture racing void and the expiry sweep give exactly
one outcome, and the money is conserved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core.errors import TransferNotHeld
from core.models import Account, LedgerEntry, Transfer, TransferAction, TransferStatus
from core.reconcile import reconcile
from core.transfers import holds
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.settling import settle_transfer

pytestmark = pytest.mark.commits  # threads and killed processes race for one hold, each on a connection of its own

ROOT = Path(__file__).resolve().parents[2]


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (a barrier), each in its own thread; results or exceptions, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(k: int) -> None:
        barrier.wait()
        try:
            results[k] = calls[k]()
        except Exception as exc:
            results[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


def open_hold(sessions, alice, bob, amount: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        tid = submit_transfer(
            s,
            user=alice.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(alice.account.id, bob.account.id, amount, "USD", None, hold=True),
        ).transfer.id
    with sessions.begin() as s:
        assert settle_transfer(s, tid).status == TransferStatus.HELD
    return tid


def books(sessions, *accounts) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        assert reconcile(s).ok
        return [(a.balance, a.held_amount) for a in (s.get_one(Account, x.account.id) for x in accounts)]


def capture(sessions, user, tid, amount=None, key=None):  # type: ignore[no-untyped-def]
    def call() -> holds.Ended:
        with sessions.begin() as s:
            return holds.capture(s, user=user, transfer_id=tid, amount=amount, idempotency_key=key or str(uuid.uuid4()))

    return call


def test_fifty_concurrent_captures_of_one_hold_apply_exactly_once(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    tid = open_hold(sessions, alice, bob, 600)
    results = race([capture(sessions, alice.user, tid, amount=10 + k) for k in range(50)])
    applied = [r for r in results if isinstance(r, holds.Ended)]
    assert len(applied) == 1 and applied[0].created
    assert all(isinstance(r, TransferNotHeld) for r in results if r is not applied[0]), results
    captured = applied[0].transfer.captured_amount
    assert captured is not None and 10 <= captured < 60
    assert books(sessions, alice, bob) == [(1_000 - captured, 0), (captured, 0)]
    with sessions() as s:
        assert s.scalar(select(func.count()).where(LedgerEntry.transfer_id == tid)) == 2
        assert s.scalar(select(func.count()).where(TransferAction.transfer_id == tid)) == 1


def test_fifty_concurrent_duplicates_of_one_capture_give_one_capture_and_replays(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    tid = open_hold(sessions, alice, bob, 300)
    results = race([capture(sessions, alice.user, tid, amount=100, key="same-capture") for _ in range(50)])
    assert all(isinstance(r, holds.Ended) for r in results), results
    assert sum(r.created for r in results) == 1
    assert {r.transfer.id for r in results} == {tid}
    assert {r.transfer.captured_amount for r in results} == {100}
    assert books(sessions, alice, bob) == [(900, 0), (100, 0)]


def test_capture_void_and_expiry_racing_give_exactly_one_outcome(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    outcomes: set[TransferStatus] = set()
    for i in range(12):
        before = books(sessions, alice, bob)
        tid = open_hold(sessions, alice, bob, 500)
        # Odd rounds: due, so only the sweep may end it (capture and void answer TRANSFER_NOT_HELD);
        # even rounds: not due yet, so capture and void race each other and the sweep finds nothing.
        expires = datetime.now(UTC) + timedelta(days=-1 if i % 2 else 1)
        with sessions.begin() as s:
            s.execute(update(Transfer).where(Transfer.id == tid).values(hold_expires_at=expires))

        def void(tid: uuid.UUID = tid) -> holds.Ended:
            with sessions.begin() as s:
                return holds.void(s, user=bob.user, transfer_id=tid, idempotency_key=str(uuid.uuid4()))

        def sweep() -> list[uuid.UUID]:
            with sessions.begin() as s:
                return holds.expire_due(s, now=datetime.now(UTC))

        results = race([capture(sessions, alice.user, tid, amount=200), void, sweep, sweep])
        won = [r for r in results[:2] if isinstance(r, holds.Ended)] + [r for r in results[2:] if tid in r]
        if i % 2 and not won:
            # Both sweeps passed the row while a capture or void held its lock only to refuse it:
            # the next tick (beat, HOLD_EXPIRY_INTERVAL_SECONDS) ends it.
            assert all(isinstance(r, TransferNotHeld) for r in results[:2]), results
            with sessions.begin() as s:
                won = [tid] if tid in holds.expire_due(s, now=datetime.now(UTC)) else []
        assert len(won) == 1, results
        assert all(isinstance(r, TransferNotHeld) for r in results[:2] if not isinstance(r, holds.Ended)), results
        with sessions() as s:
            status = s.get_one(Transfer, tid).status
            assert s.scalar(select(func.count()).where(TransferAction.transfer_id == tid)) == 1
        outcomes.add(status)
        (a_bal, a_held), (b_bal, b_held) = books(sessions, alice, bob)
        moved = 200 if status == TransferStatus.COMPLETED else 0
        assert (a_bal, a_held, b_bal, b_held) == (before[0][0] - moved, 0, before[1][0] + moved, 0)
        if i % 2:
            assert status == TransferStatus.EXPIRED
    assert TransferStatus.EXPIRED in outcomes
    assert outcomes <= {TransferStatus.COMPLETED, TransferStatus.VOIDED, TransferStatus.EXPIRED}


KILLED_MID_END = """
import sys, uuid, time
from datetime import UTC, datetime
from core.config import Settings
from core.db import make_engine, make_session_factory
from core.models import User
from core.transfers import holds
sessions = make_session_factory(make_engine(Settings()))
what, tid, user_id = sys.argv[1], uuid.UUID(sys.argv[2]), uuid.UUID(sys.argv[3])
with sessions.begin() as s:
    if what == "capture":
        user = s.get_one(User, user_id)
        holds.capture(s, user=user, transfer_id=tid, amount=None, idempotency_key="killed-capture")
    else:
        assert tid in holds.expire_due(s, now=datetime.now(UTC))
    print("applied", flush=True)  # applied, not committed
    time.sleep(60)
"""


def test_a_process_killed_mid_capture_or_mid_expiry_applies_nothing_and_loses_nothing(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    captured, expiring = open_hold(sessions, alice, bob, 300), open_hold(sessions, alice, bob, 200)
    with sessions.begin() as s:
        s.execute(
            update(Transfer).where(Transfer.id == expiring).values(hold_expires_at=datetime.now(UTC) - timedelta(1))
        )
    for what, tid in (("capture", captured), ("expire", expiring)):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_MID_END, what, str(tid), str(alice.user.id)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=os.environ.copy(),
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"applied"  # inside its transaction...
        os.kill(proc.pid, signal.SIGKILL)  # ...when the process dies
        proc.wait(10)
        proc.stdout.close()
        with sessions() as s:
            assert s.get_one(Transfer, tid).status == TransferStatus.HELD  # nothing half-done
            assert s.scalar(select(func.count()).where(TransferAction.transfer_id == tid)) == 0
        assert books(sessions, alice, bob) == [(1_000, 500), (0, 0)]  # both still held
    # The client's retry (same key) and the next sweep end them, each exactly once.
    ended = capture(sessions, alice.user, captured, key="killed-capture")()
    assert ended.created and ended.transfer.status == TransferStatus.COMPLETED
    with sessions.begin() as s:
        assert expiring in holds.expire_due(s, now=datetime.now(UTC))
    with sessions.begin() as s:
        assert expiring not in holds.expire_due(s, now=datetime.now(UTC))
    assert capture(sessions, alice.user, captured, key="killed-capture")().created is False
    assert books(sessions, alice, bob) == [(700, 0), (300, 0)]
