"""One settlement process lost or paused mid-batch, under load, with the production lock settings:
the other partitions' transfers settle within the contract's bound (API.md Operations: at most
8 s), nothing is isolated as poison, and the books are exact afterwards."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.exc import OperationalError

from core.models import Transfer, TransferStatus
from devtools import processes
from tests.chaos.conftest import ROOT, Cluster, Party, assert_books, one_broker, people, stop_all, submit
from tests.waits import wait_for

pytestmark = pytest.mark.chaos

# "settle p<partition> pid <pid>": what a settlement transaction names itself (worker/settlement.py).
_OPEN_BATCHES = text(
    "SELECT application_name FROM pg_stat_activity"
    " WHERE application_name LIKE 'settle p% pid %' AND xact_start IS NOT NULL"
)


@pytest.fixture
def http(running: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{running.api_url}/api/v1", timeout=30) as client:
        yield client


@dataclass
class Load:
    """Clients submitting random transfers among ``parties`` until stopped."""

    http: httpx.Client
    parties: list[Party]
    ids: list[uuid.UUID] = field(default_factory=list)
    accepted_at: dict[uuid.UUID, float] = field(default_factory=dict)  # time.monotonic() of each 202
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = 3) -> None:
        for n in range(clients):
            thread = threading.Thread(target=self._run, args=(random.Random(n),), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            src, dst = rng.sample(self.parties, 2)
            transfer_id = submit(self.http, src, dst, rng.randint(1, 300)).transfer_id
            self.accepted_at[transfer_id] = time.monotonic()
            self.ids.append(transfer_id)
            time.sleep(0.02)

    def stop(self) -> list[uuid.UUID]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return list(self.ids)


def open_batches(sessions) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """Settlement processes inside a batch's transaction now: pid -> partition."""
    with sessions() as s:
        names = s.scalars(_OPEN_BATCHES).all()
    found = {}
    for name in names:
        _, partition, _, pid = name.split()
        found[int(pid)] = int(partition.removeprefix("p"))
    return found


def stop_a_drainer_mid_batch(sessions, timeout: float = 60) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """SIGSTOP one settlement process (a pool child, not its whole worker) while its batch's
    transaction is open, holding its Redis leases, its partition and its rows; (pid, partition)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = open_batches(sessions)
        if not holders:
            time.sleep(0.002)
            continue
        pid, partition = next(iter(holders.items()))
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.05)  # a statement already sent completes: its transaction stays open, or it committed
        if open_batches(sessions).get(pid) == partition:
            return pid, partition
        os.kill(pid, signal.SIGCONT)  # it had committed: not mid-batch, try again
    raise AssertionError("no settlement transaction caught open")


def accepted_elsewhere_since(sessions, load: Load, since: int, partition: int) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """The transfers the load submitted after its ``since``-th, in partitions other than
    ``partition``, once a few were (waiting for its accounts, which the fault holds)."""
    wait_for("transfers submitted during the fault", lambda: len(load.ids) >= since + 15, timeout=30)
    with sessions() as s:
        return list(
            s.scalars(select(Transfer.id).where(Transfer.id.in_(load.ids[since:]), Transfer.partition != partition))
        )


def seconds_until_final(sessions, ids: list[uuid.UUID], started: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds from ``started`` until every one of ``ids`` is final."""
    return max(final_after(sessions, ids, {}, started).values())


def final_after(  # type: ignore[no-untyped-def]
    sessions, ids: list[uuid.UUID], accepted_at: dict[uuid.UUID, float], started: float
) -> dict[uuid.UUID, float]:
    """How long each transfer waited during the fault: from the later of ``started`` and its
    acceptance (``accepted_at``, time.monotonic()) until it was seen final (polled every 50 ms).
    What API.md bounds is this wait, each transfer's: a transfer the load submitted seconds into
    the fault on a loaded machine has not waited for the fault since ``started``."""
    seen: dict[uuid.UUID, float] = {}

    def final() -> bool:
        try:
            with sessions() as s:
                pending = set(
                    s.scalars(
                        select(Transfer.id).where(Transfer.id.in_(ids), Transfer.status == TransferStatus.PENDING)
                    )
                )
        except OperationalError:  # our connection was ended with the database's
            return False
        now = time.monotonic()
        for transfer_id in ids:
            if transfer_id not in pending:
                seen.setdefault(transfer_id, now)
        return len(seen) == len(ids)

    wait_for(f"{len(ids)} transfers of the other partitions final", final, timeout=60, interval=0.05)
    return {t: at - max(started, accepted_at.get(t, started)) for t, at in seen.items()}


def loaded(http, sessions, settings, admin_user) -> tuple[list[Party], Load]:  # type: ignore[no-untyped-def]
    parties = people(http, sessions, settings, admin_user, 8, 20_000)
    load = Load(http, parties)
    load.start()
    wait_for("settlement under way", lambda: len(load.ids) >= 30)
    return parties, load


def test_kill_9_one_drainer_mid_batch_others_settle_within_8_s(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    """Its Redis leases lapse within the 3 s TTL (its watchdog died with it) and its transaction
    rolls back with its connection: the other partitions settle on (they waited out the dead
    holder's 30 s lock TTL before leases). The bound is the contract's (API.md Operations: at most
    8 s), each transfer's own wait: a tighter one (5 s, from the fault to the last transfer final)
    failed once at load 13 with 6.0 s, the load's own submissions slowed; the bug it guards waits 30 s."""
    parties, load = loaded(http, sessions, settings, admin_user)
    try:
        pid, partition = stop_a_drainer_mid_batch(sessions)
        started, since = time.monotonic(), len(load.ids)
        os.kill(pid, signal.SIGKILL)  # mid-batch (it was stopped there): the pool replaces it
        waiting = accepted_elsewhere_since(sessions, load, since, partition)
        waited = final_after(sessions, waiting, load.accepted_at, started)
    finally:
        ids = load.stop()
    assert waiting, "no transfer of another partition during the fault: it tested nothing"
    longest = max(waited.values())
    assert longest <= 8, f"a transfer of another partition waited {longest:.1f} s for a killed drainer"
    assert_books(sessions, parties, ids, 8 * 20_000)


@one_broker
def test_sigstop_one_drainer_mid_batch_others_settle_within_8_s(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    """Its leases lapse (its watchdog is paused with it), Postgres ends its idle transaction
    (SETTLE_IDLE_TIMEOUT_MS) and frees its rows and partition: the other partitions settle within
    8 s (they waited for the whole pause, up to the 60 s idle timeout). On SIGCONT its connection
    errors are retried as transient: nothing is isolated as poison."""
    parties, load = loaded(http, sessions, settings, admin_user)
    pid = 0
    try:
        pid, partition = stop_a_drainer_mid_batch(sessions)
        started, since = time.monotonic(), len(load.ids)
        waiting = accepted_elsewhere_since(sessions, load, since, partition)
        waited = final_after(sessions, waiting, load.accepted_at, started)
        # Still paused past every timeout: its own partition is settled by another drainer.
        wait_for("the paused drainer's transaction ended by Postgres", lambda: pid not in open_batches(sessions))
        time.sleep(2)  # the fault itself: the pause goes on a while longer
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        ids = load.stop()
    assert waiting, "no transfer of another partition during the fault: it tested nothing"
    longest = max(waited.values())
    assert longest <= 8, f"a transfer of another partition waited {longest:.1f} s for a paused drainer"
    final = assert_books(sessions, parties, ids, 8 * 20_000)
    assert {t.failure_code for t in final.values()} <= {None, "INSUFFICIENT_FUNDS"}
    assert "transfer_unsettleable" not in running.worker_logs()


@one_broker
def test_the_sweeper_runs_while_every_settlement_process_is_stuck(  # type: ignore[no-untyped-def]
    running, http, sessions, settings, admin_user, tmp_path
) -> None:
    """Production pools: settlement (-X webhooks,maintenance) and maintenance (-Q maintenance).
    With the settlement pool frozen, the sweeper still runs and re-nudges the stuck transfers (it
    shared the settlement queue and waited behind stuck batches: 457 runs dropped)."""
    running.stop_workers()  # the shared pools consume every queue: not this test's
    env = {**running.env, "SWEEPER_INTERVAL_SECONDS": "1", "SWEEPER_PENDING_AGE_SECONDS": "2"}
    with ThreadPoolExecutor(3) as boot:  # side by side: each start waits for its process to be ready
        starting = [
            boot.submit(
                processes.start_worker,
                f"{running.broker}-settle-only",
                env,
                tmp_path,
                ROOT,
                queues=["--exclude-queues", "webhooks,maintenance"],
            ),
            boot.submit(
                processes.start_worker,
                f"{running.broker}-maintenance",
                env,
                tmp_path,
                ROOT,
                queues=["-Q", "maintenance"],
            ),
            boot.submit(processes.start_beat, env, tmp_path, ROOT, name=f"{running.broker}-beat"),
        ]
    settle, upkeep, beat = (s.result() for s in starting)
    try:
        a, b = people(http, sessions, settings, admin_user, 2, 1_000)
        settle.signal(signal.SIGSTOP)  # every settlement process stuck
        ids = [submit(http, a, b, 10).transfer_id for _ in range(3)]

        def swept() -> bool:
            with sessions() as s:
                rows = s.scalars(select(Transfer).where(Transfer.id.in_(ids))).all()
            return all(t.requeued_at is not None for t in rows)

        wait_for("the sweeper to re-nudge the stuck transfers", swept, timeout=30)
        settle.signal(signal.SIGCONT)
        assert_books(sessions, [a, b], ids, 2_000)
    finally:
        settle.signal(signal.SIGCONT)
        stop_all([beat, upkeep, settle])


@contextmanager
def database_down(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The database refuses every connection for the block: its sessions are ended and no new
    one is allowed (as during an outage or a failover), then it is open again."""
    url = make_url(settings.sqlalchemy_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = url.database
    try:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": name})
        yield
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_settlement_resumes_within_seconds_of_a_database_outage(  # type: ignore[no-untyped-def]
    running, http, sessions, settings, admin_user, tmp_path
) -> None:
    """Retries are countdowns of 1-4 s that no worker process waits out (on RabbitMQ through its
    native delayed delivery): after a 10 s outage settlement is back within seconds by its retries
    alone (no beat here, so no sweeper to help). It took 21.7 s on RabbitMQ, the worker holding
    a retry backed off up to 30 s."""
    running.stop_workers()  # this test's pool has no beat: only retries bring it back
    parties = people(http, sessions, settings, admin_user, 6, 5_000)
    rng = random.Random(5)
    pairs = [rng.sample(parties, 2) for _ in range(40)]
    ids = [submit(http, src, dst, rng.randint(1, 900)).transfer_id for src, dst in pairs]  # nudged, PENDING
    pool = None
    try:
        with database_down(settings):
            pool = processes.start_worker(f"{running.broker}-retries", running.env, tmp_path, ROOT)
            time.sleep(10)  # the fault itself: the database stays down while the pool's retries fail
        started = time.monotonic()
        elapsed = seconds_until_final(sessions, ids, started)
        assert "settlement_retry" in pool.log()  # the outage was met, and retried
    finally:
        if pool is not None:
            pool.stop()
    assert elapsed <= 6, f"settlement took {elapsed:.1f} s to come back after the database did"
    assert_books(sessions, parties, ids, 6 * 5_000)
