"""Holds under faults: a worker killed while holds settle and expire, and captures racing the
expiry sweep over HTTP. Every hold ends at most once, held totals equal the open holds, and the
books are exactly right afterwards."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from core.models import Account, Transfer, TransferAction, TransferStatus
from tests import factories
from tests.chaos.conftest import Cluster, Party, assert_books, one_broker, people, wait_final
from tests.waits import wait_for

pytestmark = pytest.mark.chaos


@pytest.fixture
def http(running: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{running.api_url}/api/v1", timeout=30) as client:
        yield client


def post(http: httpx.Client, path: str, body: dict, headers: dict[str, str], deadline: float = 60) -> httpx.Response:  # type: ignore[type-arg]
    """A careful client: on 503 or a dropped connection, retry with the SAME Idempotency-Key."""
    headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    stop = time.monotonic() + deadline
    while True:
        try:
            r = http.post(path, json=body, headers=headers)
            if r.status_code != 503:
                return r
        except httpx.TransportError:
            pass
        assert time.monotonic() < stop, f"{path} never answered"
        time.sleep(0.2)


def hold(http: httpx.Client, src: Party, dst: Party, amount: int) -> uuid.UUID:
    body = {
        "source_account_id": str(src.account_id),
        "destination_account_id": str(dst.account_id),
        "amount": amount,
        "currency": "USD",
        "pin": factories.PIN,
        "hold": True,
    }
    r = post(http, "/transfers", body, src.headers)
    assert r.status_code in (200, 202), r.text
    return uuid.UUID(r.json()["id"])


@one_broker
def test_worker_killed_while_holds_settle_and_expire_racing_captures(  # type: ignore[no-untyped-def]
    running, http, sessions, settings, admin_user
) -> None:
    parties = people(http, sessions, settings, admin_user, 4, 5_000)
    rng = random.Random(7)
    plan = [(*rng.sample(parties, 2), rng.randint(1, 900)) for _ in range(80)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(lambda step: hold(http, *step), plan))
    wait_for("holds to settle", lambda: _count(sessions, ids, TransferStatus.HELD) >= 5)
    running.kill("w1")  # mid-settlement (and the beat with it)
    time.sleep(1)
    running.start_worker("w1")
    final = wait_final(sessions, ids)
    held = [t for t in final.values() if t.status == TransferStatus.HELD]
    assert held, "no hold survived the available-balance checks"

    # Half of the holds fall due: captures of every hold over HTTP while the worker running the beat
    # (the expiry sweep) is killed again. A due hold is not capturable (409) even before the sweep.
    due = {t.id for t in held[::2]}
    with sessions.begin() as s:
        s.execute(
            update(Transfer)
            .where(Transfer.id.in_(due))
            .values(hold_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    owner = {p.account_id: p for p in parties}

    def capture(t: Transfer) -> tuple[uuid.UUID, int]:
        r = post(
            http, f"/transfers/{t.id}/capture", {"amount": max(1, t.amount // 2)}, owner[t.source_account_id].headers
        )
        return t.id, r.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        captures = pool.map(capture, held)
        running.kill("w1")
        time.sleep(1)
        running.start_worker("w1")
        answers = dict(captures)
    assert set(answers.values()) <= {202, 409}, answers
    assert all(answers[t] == 202 for t in {t.id for t in held} - due)  # nothing else ends those
    assert all(answers[t] == 409 for t in due)

    # Every due hold ends (expired by the restarted beat), none stays open.
    wait_for("due holds to end", lambda: _count(sessions, list(due), TransferStatus.HELD) == 0, timeout=60)
    with sessions() as s:
        rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_([t.id for t in held])))}
        actions = dict(
            s.execute(
                select(TransferAction.transfer_id, func.count())
                .where(TransferAction.transfer_id.in_(list(rows)))
                .group_by(TransferAction.transfer_id)
            ).all()
        )
        held_totals = dict(s.execute(select(Account.id, Account.held_amount).where(Account.id.in_(list(owner)))).all())
    for tid, t in rows.items():
        assert actions.get(tid) == 1, tid  # exactly one ending
        if answers[tid] == 202:
            assert t.status == TransferStatus.COMPLETED and t.captured_amount == max(1, t.amount // 2)
        else:
            assert t.status == TransferStatus.EXPIRED
    assert set(held_totals.values()) == {0}
    assert_books(sessions, parties, ids, 4 * 5_000)


def _count(sessions, ids: list[uuid.UUID], status: TransferStatus) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.id.in_(ids), Transfer.status == status)
        )
