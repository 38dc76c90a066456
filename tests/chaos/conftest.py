"""Chaos harness: a real API (gunicorn) and two Celery worker processes per broker, faults
injected into real processes, and the same books check after every test."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from core.audit.verify import verify_chain
from core.models import Account, LedgerEntry, Transfer, TransferStatus
from core.reconcile import reconcile
from devtools import processes
from tests import factories
from tests.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
# CHAOS_RABBITMQ_URL: a broker of your own (its vhost is used as given). Otherwise each run
# creates a vhost of its own on the local RabbitMQ and deletes it at the end, so a run never
# touches queues that anything else on the machine uses.
RABBITMQ_URL = os.environ.get("CHAOS_RABBITMQ_URL")

# Short timeouts so faults surface and heal within seconds. The account locks and the settlement
# transaction's timeouts are the production ones: what the fault tests promise is theirs.
CHAOS_ENV = {
    "SWEEPER_INTERVAL_SECONDS": "1",
    "SWEEPER_PENDING_AGE_SECONDS": "3",
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": "15",
    "DB_LOCK_TIMEOUT_MS": "4000",
    # The beat materialises scheduled transfers every second, not every 10 (test_brokers.py's demo
    # waits for two ticks: the run's transfer made, then its outcome recorded).
    "SCHEDULE_INTERVAL_SECONDS": "1",
}


def rabbitmq_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    broker: str
    env: dict[str, str]
    log_dir: Path
    api_url: str = ""
    api: processes.Proc | None = None
    workers: dict[str, processes.Proc] = field(default_factory=dict)
    _starts: Iterator[int] = field(default_factory=itertools.count)

    def start_worker(self, name: str) -> None:
        # A fresh beat schedule file per start: a kill -9 may leave the old one half-written.
        n = next(self._starts)
        proc = processes.start_worker(
            f"{self.broker}-{name}", self.env, self.log_dir, ROOT, concurrency=2, beat=(name == "w1")
        )
        proc.name = f"{self.broker}-{name}-{n}"
        self.workers[name] = proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.workers[name]
        proc.signal(sig)
        if sig == signal.SIGKILL:
            proc.popen.wait(10)

    def ensure_running(self) -> None:
        down = [n for n in ("w1", "w2") if n not in self.workers or self.workers[n].popen.poll() is not None]
        # Side by side: each start waits for its worker's " ready." (seconds of imports and boot).
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(self.start_worker, name) for name in down]:
                started.result()

    def stop_workers(self) -> None:
        """Stop every worker of the cluster (each a warm shutdown of seconds: side by side)."""
        stop_all(list(self.workers.values()))
        self.workers.clear()

    def stop(self) -> None:
        stop_all([*self.workers.values(), *([self.api] if self.api else [])])

    def worker_logs(self) -> str:
        return "".join(p.log() for p in self.workers.values())


def stop_all(procs: list[processes.Proc]) -> None:
    """Stop processes side by side: each stop waits for its process's own shutdown."""
    with ThreadPoolExecutor(max(1, len(procs))) as pool:
        for stopped in [pool.submit(p.stop) for p in procs]:
            stopped.result()


def _rabbitmqctl(*args: str) -> bool:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return False
    try:
        return subprocess.run([ctl, *args], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def _own_vhost() -> Iterator[str]:
    """A broker URL on a vhost created for this run (and deleted after it)."""
    if RABBITMQ_URL:
        yield RABBITMQ_URL
        return
    vhost = f"bank-test-{uuid.uuid4().hex[:12]}"
    if not (
        _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    ):
        _rabbitmqctl("delete_vhost", vhost)
        pytest.skip("cannot create a RabbitMQ vhost of this run's own (rabbitmqctl); set CHAOS_RABBITMQ_URL")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


BROKERS = ("redis", "rabbitmq")
# A fault whose outcome the broker plays no part in (locks, idempotency, the database, routing to
# queues) runs on one broker: Redis, which every run has. A fault that tests the broker's own
# behaviour (redelivery after a kill -9, retries through its delayed delivery, the user flow on
# each) runs on both: those tests carry no mark and take the fixture's params.
one_broker = pytest.mark.parametrize("cluster", ["redis"], indirect=True)


@pytest.fixture(scope="package", params=BROKERS)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with ExitStack() as stack:
        env = dict(CHAOS_ENV)
        if request.param == "rabbitmq":
            if not RABBITMQ_URL and not rabbitmq_available():
                pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")
            env["CELERY_BROKER_URL"] = stack.enter_context(_own_vhost())
        c = Cluster(request.param, env, tmp_path_factory.mktemp(f"chaos-{request.param}"))
        stack.callback(c.stop)
        port = processes.free_port()
        with ThreadPoolExecutor(1) as pool:  # the API boots while the workers do
            api = pool.submit(processes.start_api, env, c.log_dir, ROOT, port)
            try:
                c.ensure_running()
            finally:
                c.api = api.result()  # registered for c.stop even when a worker failed to start
        c.api_url = f"http://127.0.0.1:{port}"
        yield c


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    cluster.ensure_running()
    return cluster


@dataclass
class Party:
    customer: factories.Customer
    headers: dict[str, str]

    @property
    def account_id(self) -> uuid.UUID:
        return self.customer.account.id


def people(http: httpx.Client, sessions, settings, admin_user, n: int, balance: int) -> list[Party]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        c = factories.customer(sessions, settings)
        if balance:
            factories.fund(sessions, admin_user, c.account, balance)
        r = http.post("/auth/login", json={"email": c.email, "password": factories.PASSWORD})
        out.append(Party(c, {"Authorization": f"Bearer {r.json()['access_token']}"}))
    return out


@dataclass
class Submission:
    transfer_id: uuid.UUID
    first_status: int  # 202 on the first try, or 503/connection error then 202 on a retry
    statuses: list[int]


def submit(
    http: httpx.Client, src: Party, dst: Party, amount: int, key: str | None = None, deadline: float = 60
) -> Submission:
    """Submit like a careful client: on 503 or a dropped connection, retry with the SAME key."""
    key = key or str(uuid.uuid4())
    body = {
        "source_account_id": str(src.account_id),
        "destination_account_id": str(dst.account_id),
        "amount": amount,
        "currency": "USD",
        "pin": factories.PIN,
    }
    statuses: list[int] = []
    stop = time.monotonic() + deadline
    while True:
        try:
            r = http.post("/transfers", json=body, headers={**src.headers, "Idempotency-Key": key})
            statuses.append(r.status_code)
            if r.status_code in (200, 202):
                return Submission(uuid.UUID(r.json()["id"]), statuses[0], statuses)
            assert r.status_code == 503, r.text
        except httpx.TransportError:
            statuses.append(0)
        if time.monotonic() > stop:
            raise AssertionError(f"submission never accepted: {statuses}")
        time.sleep(0.2)


def submit_many(http: httpx.Client, plan: list[tuple[Party, Party, int]], threads: int = 8) -> list[Submission]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda step: submit(http, *step), plan))


def wait_final(sessions, ids: list[uuid.UUID], timeout: float = 120) -> dict[uuid.UUID, Transfer]:  # type: ignore[no-untyped-def]
    def final() -> dict[uuid.UUID, Transfer] | None:
        try:
            with sessions() as s:
                rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_(ids)))}
        except OperationalError:  # Postgres restarting under us
            return None
        waiting = [t for t in rows.values() if t.status == TransferStatus.PENDING]
        return rows if len(rows) == len(set(ids)) and not waiting else None

    return wait_for(f"{len(set(ids))} transfers final", final, timeout=timeout, interval=0.25)


def assert_books(sessions, parties: list[Party], ids: list[uuid.UUID], total: int) -> dict[uuid.UUID, Transfer]:  # type: ignore[no-untyped-def]
    """Every accepted transfer final, money conserved, nothing applied twice, books reconcile,
    audit chain intact."""
    final = wait_final(sessions, ids)
    accounts = [p.account_id for p in parties]
    with sessions() as s:
        balances = dict(s.execute(select(Account.id, Account.balance).where(Account.id.in_(accounts))).all())
        per_transfer = dict(
            s.execute(
                select(LedgerEntry.transfer_id, func.count())
                .where(LedgerEntry.transfer_id.in_(ids))
                .group_by(LedgerEntry.transfer_id)
            ).all()
        )
    assert sum(balances.values()) == total
    assert min(balances.values()) >= 0
    for t in final.values():
        assert per_transfer.get(t.id, 0) == (2 if t.status == TransferStatus.COMPLETED else 0), t.id
    with sessions.begin() as s:
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        report = reconcile(s)
        assert report.ok, report.problems
        chain = verify_chain(s)
        assert chain.ok, chain.reason
    return final
