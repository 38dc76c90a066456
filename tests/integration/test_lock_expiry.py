"""Why an expired Redis lock is harmless: the Postgres row locks are the real guard.

Worker A holds the Redis leases and is inside its settlement transaction when it is paused
(a GC pause, SIGSTOP, a slow disk): its watchdog stops renewing with it and the leases lapse.
Worker B then takes the Redis locks and settles a transfer on the same account. B blocks on
A's row lock, reads the balance A committed, and the second transfer fails for lack of funds instead of overdrawing.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from core.locks import account_lock_key
from core.models import TransferStatus
from core.transfers.idempotency import MoneyMovement
from core.transfers.settle import Settled, settle_batch
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.integration.test_locks import account_locks

pytestmark = pytest.mark.commits  # two workers race on connections of their own; B must wait for A's row locks


def settle_one(s, transfer_id: uuid.UUID) -> Settled:  # type: ignore[no-untyped-def]
    (settled,) = settle_batch(s, [transfer_id])
    return settled


def test_expired_redis_lock_cannot_cause_a_lost_update(sessions, redis_client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    ids = []
    for _ in range(2):
        with sessions.begin() as s:
            ids.append(
                submit_transfer(
                    s,
                    user=alice.user,
                    idempotency_key=str(uuid.uuid4()),
                    movement=MoneyMovement(alice.account.id, bob.account.id, 60, "USD", None),
                ).transfer.id
            )
    pair = [alice.account.id, bob.account.id]
    a_in_txn, b_has_redis_lock = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def worker_a() -> None:
        # A's leases as a paused holder leaves them: taken, never renewed, lapsing after 0.3 s.
        for account in pair:
            redis_client.set(account_lock_key(account), "paused-a", nx=True, px=300)
        with sessions.begin() as s:
            results["a"] = settle_one(s, ids[0])  # rows locked, not yet committed
            a_in_txn.set()
            b_has_redis_lock.wait(5)  # "paused" past the TTL until B holds the Redis locks
            time.sleep(0.3)  # B is now blocked on our row locks
        results["a_committed"] = time.monotonic()

    def worker_b() -> None:
        a_in_txn.wait(5)
        with account_locks(redis_client, pair, ttl=5, wait=2) as stats:
            results["b_wait"] = stats.wait_seconds
            b_has_redis_lock.set()
            with sessions.begin() as s:
                results["b"] = settle_one(s, ids[1])
                results["b_settled"] = time.monotonic()

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)

    assert b_has_redis_lock.is_set()  # B really got the Redis locks while A was mid-transaction
    assert results["b_wait"] > 0.1  # B waited on A's Redis locks until they expired...
    assert results["b_settled"] > results["a_committed"]  # ...then on A's row locks until A committed
    assert results["a"].status == TransferStatus.COMPLETED  # type: ignore[attr-defined]
    assert results["b"].status == TransferStatus.FAILED  # type: ignore[attr-defined]
    assert results["b"].failure_code == "INSUFFICIENT_FUNDS"  # type: ignore[attr-defined]
    assert balance(sessions, alice.account.id) == 40
    assert balance(sessions, bob.account.id) == 60
