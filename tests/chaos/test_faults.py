"""Faults injected into real processes; after each, the books must be exactly right."""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from core.models import Transfer, TransferStatus
from tests.chaos.conftest import Cluster, Party, assert_books, one_broker, people, submit, submit_many
from tests.waits import wait_for

pytestmark = pytest.mark.chaos


@pytest.fixture
def http(running: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{running.api_url}/api/v1", timeout=30) as client:
        yield client


def random_plan(parties: list[Party], n: int, seed: int, max_amount: int) -> list[tuple[Party, Party, int]]:
    rng = random.Random(seed)
    plan = []
    for _ in range(n):
        src, dst = rng.sample(parties, 2)
        plan.append((src, dst, rng.randint(1, max_amount)))
    return plan


def count_settled(sessions, ids: list[uuid.UUID]) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.id.in_(ids), Transfer.status != "PENDING")
        )


def count_submitted(sessions, parties: list[Party]) -> int:  # type: ignore[no-untyped-def]
    """Transfers the parties have sent (their funding deposits are the admin's)."""
    users = [p.customer.user.id for p in parties]
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Transfer).where(Transfer.initiated_by.in_(users)))


def test_kill_9_a_worker_mid_settlement(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    parties = people(http, sessions, settings, admin_user, 6, 5_000)
    subs = submit_many(http, random_plan(parties, 150, seed=1, max_amount=2_000))
    ids = [s.transfer_id for s in subs]
    wait_for("settlement to start", lambda: count_settled(sessions, ids) >= 10)
    running.kill("w1")  # mid-flight: its reserved and running tasks die with it (kill waits for the exit)
    time.sleep(1)  # the fault itself: the worker stays down a while before its supervisor restarts it
    running.start_worker("w1")
    assert_books(sessions, parties, ids, 6 * 5_000)


@one_broker
def test_50_duplicates_while_a_worker_is_killed(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    a, b = people(http, sessions, settings, admin_user, 2, 1_000)
    key = f"dup-{uuid.uuid4()}"
    barrier = threading.Barrier(50)
    results: list = []

    def send() -> None:
        barrier.wait()
        results.append(submit(http, a, b, 700, key=key))

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    running.kill("w2")
    for t in threads:
        t.join()
    running.start_worker("w2")
    ids = {r.transfer_id for r in results}
    assert len(ids) == 1 and len(results) == 50
    final = assert_books(sessions, [a, b], list(ids), 2_000)
    assert next(iter(final.values())).status == TransferStatus.COMPLETED
    with sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(Transfer).where(Transfer.initiated_by == a.customer.user.id)) == 1
        )


@one_broker
def test_hot_account_500_transfers(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    src, *dests = people(http, sessions, settings, admin_user, 6, 0)
    from tests import factories

    factories.fund(sessions, admin_user, src.customer.account, 30_000)
    plan = [(src, dests[i % len(dests)], 100) for i in range(500)]
    ids = [s.transfer_id for s in submit_many(http, plan, threads=10)]
    final = assert_books(sessions, [src, *dests], ids, 30_000)
    outcomes = [t.status for t in final.values()]
    # The balance runs out after exactly 300 transfers of 100: no lost update, no overdraft.
    assert outcomes.count(TransferStatus.COMPLETED) == 300
    assert outcomes.count(TransferStatus.FAILED) == 200
    assert {t.failure_code for t in final.values() if t.status == TransferStatus.FAILED} == {"INSUFFICIENT_FUNDS"}
    assert "Deadlock" not in running.worker_logs()


@one_broker
def test_worker_paused_past_its_lock_ttl(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    a, b = people(http, sessions, settings, admin_user, 2, 3_000)
    plan = [(a, b, 50) if i % 2 else (b, a, 70) for i in range(80)]
    subs = submit_many(http, plan, threads=6)
    ids = [s.transfer_id for s in subs]
    wait_for("settlement to start", lambda: count_settled(sessions, ids) >= 5)
    running.kill("w1", signal.SIGSTOP)  # frozen mid-task, holding locks (Redis and maybe rows)
    # The fault itself: paused for longer than LOCK_TTL_SECONDS (3 s), so its Redis leases lapse and
    # w2 takes them. Nothing to wait on: w2 may be blocked on w1's row locks until w1 resumes.
    time.sleep(4)
    running.kill("w1", signal.SIGCONT)
    assert_books(sessions, [a, b], ids, 6_000)
    assert "transfer_settled" in running.workers["w2"].log()


@one_broker
def test_redis_outage_during_a_burst(running, http, sessions, settings, admin_user, stack) -> None:  # type: ignore[no-untyped-def]
    if running.broker != "redis" or stack._redis_proc is None:
        pytest.skip("needs the embedded Redis as broker to stop and start it")
    parties = people(http, sessions, settings, admin_user, 4, 5_000)
    plan = random_plan(parties, 60, seed=2, max_amount=1_500)
    outcome: list = []
    burst = threading.Thread(target=lambda: outcome.extend(submit_many(http, plan, threads=4)))
    burst.start()
    wait_for("the burst to be under way", lambda: count_submitted(sessions, parties) >= 5)
    stack.stop_redis()
    time.sleep(2)  # the fault itself: Redis stays down while the burst goes on
    stack.start_redis()
    burst.join()
    # kombu's Redis transport over a unix socket (the embedded Redis) can crash a consumer on the
    # lost connection (AttributeError on conninfo.hostname while restoring unacked messages); a
    # supervisor restarts it, as compose's restart policy does. Over TCP that path is not taken.
    running.ensure_running()
    ids = [s.transfer_id for s in outcome]
    assert len(ids) == 60
    # Documented behaviour: with Redis down the API answers 202 (committed; the sweeper
    # queues it once Redis is back) or 503 having committed nothing, so the retry with
    # the same key creates the transfer then (202, not a replayed 200).
    for s in outcome:
        if s.first_status != 202:
            assert s.statuses[-1] == 202, s.statuses
    assert_books(sessions, parties, ids, 4 * 5_000)


@one_broker
def test_postgres_restart_during_settlement(running, http, sessions, settings, admin_user, stack) -> None:  # type: ignore[no-untyped-def]
    if not stack.postgres_embedded:
        pytest.skip("needs the embedded Postgres to restart it")
    parties = people(http, sessions, settings, admin_user, 5, 5_000)
    ids = [s.transfer_id for s in submit_many(http, random_plan(parties, 120, seed=3, max_amount=1_500))]
    wait_for("settlement to start", lambda: count_settled(sessions, ids) >= 10)
    stack.restart_postgres()
    assert_books(sessions, parties, ids, 5 * 5_000)
