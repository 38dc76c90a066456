"""A worker killed while it settles atomic batches: every batch still ends all COMPLETED or all
FAILED (one own failure code, LINKED_FAILED on the rest), nothing lost, nothing applied twice."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from core.models import Transfer, TransferStatus
from tests import factories
from tests.chaos.conftest import Cluster, Party, assert_books, one_broker, people
from tests.waits import wait_for

pytestmark = pytest.mark.chaos


@pytest.fixture
def http(running: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{running.api_url}/api/v1", timeout=30) as client:
        yield client


def post_atomic(
    http: httpx.Client, src: Party, items: list[dict[str, object]], deadline: float = 60
) -> list[uuid.UUID]:
    """Like a careful client: on 503 or a dropped connection, send the same batch (same keys) again."""
    body = {"pin": factories.PIN, "atomic": True, "items": items}
    stop = time.monotonic() + deadline
    while True:
        try:
            r = http.post("/transfers/batch", json=body, headers=src.headers)
            if r.status_code == 200:
                assert {i["status"] for i in r.json()["items"]} <= {200, 202}, r.text
                return [uuid.UUID(i["transfer"]["id"]) for i in r.json()["items"]]
            assert r.status_code == 503, r.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < stop, "batch never accepted"
        time.sleep(0.2)


@one_broker
def test_kill_9_a_worker_mid_atomic_batches(running, http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    parties = people(http, sessions, settings, admin_user, 6, 5_000)
    rng = random.Random(7)
    plan = []
    for _ in range(5):
        for src in parties:
            others = [p for p in parties if p is not src]
            items = [
                {
                    "idempotency_key": str(uuid.uuid4()),
                    "source_account_id": str(src.account_id),
                    "destination_account_id": str(rng.choice(others).account_id),
                    "amount": rng.randint(1, 300),
                    "currency": "USD",
                }
                for _ in range(15)
            ]
            if len(plan) % 3 == 0:  # more than all the money there is: this batch must fail whole
                items[7]["amount"] = 6 * 5_000 + 1
            plan.append((src, items))
    with ThreadPoolExecutor(6) as pool:
        batches = list(pool.map(lambda step: post_atomic(http, *step), plan))
    ids = [t for b in batches for t in b]

    def settled() -> int:
        with sessions() as s:
            return s.scalar(select(func.count()).where(Transfer.id.in_(ids), Transfer.status != "PENDING")) or 0

    wait_for("settlement to start", lambda: settled() >= 15)
    running.kill("w1")  # mid-flight: its reserved and running tasks die with it
    time.sleep(1)
    running.start_worker("w1")
    final = assert_books(sessions, parties, ids, 6 * 5_000)
    outcomes = {"completed": 0, "failed": 0}
    for batch in batches:
        statuses = {final[t].status for t in batch}
        assert len(statuses) == 1, f"an atomic batch settled partly: {statuses}"
        if statuses == {TransferStatus.FAILED}:
            codes = [final[t].failure_code for t in batch]
            assert len([c for c in codes if c != "LINKED_FAILED"]) == 1, codes  # the first failing one's
            outcomes["failed"] += 1
        else:
            outcomes["completed"] += 1
    assert outcomes["failed"] >= 10 and outcomes["completed"], outcomes
