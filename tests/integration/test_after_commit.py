"""Publish after commit, against real Postgres, the API's request session and the sweeper."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core.after_commit import publish_after_commit
from core.models import Transfer, TransferStatus
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import PASSWORD, PIN, fund
from tests.settling import settle_transfer
from web.context import transaction
from worker import settlement, sweeper

# What runs after commit is checked from another connection, which sees only real commits.
pytestmark = pytest.mark.commits


def _status(engine: Engine, transfer_id: uuid.UUID) -> str | None:
    """The row as another connection sees it: only what has committed."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT status FROM transfers WHERE id = :id"), {"id": transfer_id}).scalar()


def _submit(session: Session, alice: Any, bob: Any) -> Transfer:
    return submit_transfer(
        session,
        user=alice.user,
        idempotency_key=str(uuid.uuid4()),
        movement=MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None),
    ).transfer


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    return alice, bob


def test_the_callable_runs_once_and_sees_the_row_committed(sessions, engine, pair) -> None:  # type: ignore[no-untyped-def]
    seen: list[str | None] = []
    with sessions.begin() as session:
        transfer = _submit(session, *pair)
        publish_after_commit(session, lambda: seen.append(_status(engine, transfer.id)))
        assert seen == []
    assert seen == ["PENDING"]
    with sessions.begin() as session:
        settle_transfer(session, transfer.id)  # leaves nothing PENDING behind
    assert seen == ["PENDING"]


def test_a_rolled_back_transaction_publishes_nothing(sessions, engine, pair) -> None:  # type: ignore[no-untyped-def]
    calls: list[uuid.UUID] = []
    transfer_id = None
    with pytest.raises(LookupError), sessions.begin() as session:
        transfer_id = _submit(session, *pair).id
        publish_after_commit(session, calls.append, transfer_id)
        raise LookupError("fails after the insert")
    assert transfer_id is not None and _status(engine, transfer_id) is None
    with sessions.begin() as session:
        session.execute(select(1))  # the session's next commit does not run it either
    assert calls == []


def test_a_rolled_back_savepoint_drops_only_its_own(sessions, engine, pair) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    with sessions.begin() as session:
        publish_after_commit(session, calls.append, "outer")
        savepoint = session.begin_nested()
        publish_after_commit(session, calls.append, "rolled back savepoint")
        savepoint.rollback()
        with session.begin_nested():
            publish_after_commit(session, calls.append, "released savepoint")
        assert calls == []  # releasing a savepoint is not the commit
    assert calls == ["outer", "released savepoint"]


def test_the_request_session_publishes_at_the_views_commit(app, sessions, engine, pair) -> None:  # type: ignore[no-untyped-def]
    seen: list[str | None] = []
    with app.test_request_context():
        with pytest.raises(LookupError), transaction() as session:
            rolled_back = _submit(session, *pair)
            publish_after_commit(session, seen.append, "rolled back")
            raise LookupError("the view failed")
        with transaction() as session:
            transfer = _submit(session, *pair)
            publish_after_commit(session, lambda: seen.append(_status(engine, transfer.id)))
            assert seen == []
        assert seen == ["PENDING"]
    assert _status(engine, rolled_back.id) is None
    with sessions.begin() as session:
        settle_transfer(session, transfer.id)


def _headers(client, email: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['access_token']}", "Idempotency-Key": str(uuid.uuid4())}


def _post_transfer(client, alice, bob):  # type: ignore[no-untyped-def]
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 25,
        "currency": "USD",
        "pin": PIN,
    }
    return client.post("/api/v1/transfers", json=body, headers=_headers(client, alice.email))


def test_an_accepted_transfer_is_nudged_once_after_its_commit(client, engine, pair, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[set[uuid.UUID]] = []
    real = settlement.nudge_after_accept

    def nudge(redis: Any, partition: int) -> None:
        with engine.connect() as conn:
            pending = conn.execute(
                text("SELECT id FROM transfers WHERE partition = :p AND status = 'PENDING'"), {"p": partition}
            )
            seen.append({row.id for row in pending})
        real(redis, partition)

    monkeypatch.setattr("web.transfers.nudge_after_accept", nudge)
    r = _post_transfer(client, *pair)
    assert r.status_code == 202, r.json
    assert len(seen) == 1 and uuid.UUID(r.json["id"]) in seen[0]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_publish_that_raises_after_commit_keeps_the_202_and_the_sweeper_settles(  # type: ignore[no-untyped-def]
    client, sessions, engine, pair, monkeypatch, worker_resources
) -> None:
    def broker_down(redis: Any, partition: int) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("web.transfers.nudge_after_accept", broker_down)
    r = _post_transfer(client, *pair)
    assert r.status_code == 202, r.json
    transfer_id = uuid.UUID(r.json["id"])
    assert _status(engine, transfer_id) == "PENDING"  # committed, though never published

    republished: list[int] = []
    real = settlement.enqueue_settlement

    def enqueue(partition: int) -> bool:
        republished.append(partition)
        return real(partition)  # the real publish, to the test broker

    monkeypatch.setattr(sweeper, "enqueue_settlement", enqueue)
    with sessions() as session:
        partition = session.get_one(Transfer, transfer_id).partition

    def swept() -> bool:
        sweeper.sweep_pending()
        return partition in republished

    # SWEEPER_PENDING_AGE_SECONDS is 3 in tests: the sweeper claims it once it is that old.
    _wait(swept, 20, "the sweeper's re-nudge")
    settlement.settle_partition(partition)  # what a worker runs on that message
    assert _status(engine, transfer_id) == TransferStatus.COMPLETED.value
