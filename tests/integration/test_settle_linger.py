"""The drainer's linger (SETTLE_LINGER_MS): a partial batch waits once for the transfers arriving
meanwhile to join it; a full batch (a backlog) and an empty partition never wait."""

from __future__ import annotations

import dataclasses
import time
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from core.models import Transfer, TransferStatus
from core.transfers.idempotency import MoneyMovement
from core.transfers.routing import partition_of
from core.transfers.submit import submit_transfer
from tests.factories import fund
from worker import settlement

pytestmark = pytest.mark.commits  # the worker settles on its own engine
PARTITIONS = 1024  # so each test's source account has a partition of its own
BATCH = 3


@pytest.fixture
def drainer(monkeypatch, worker_resources):  # type: ignore[no-untyped-def]
    """settle_partition with batches of 3; its sleeps are recorded, and each runs ``during_sleep``."""
    small = dataclasses.replace(
        worker_resources, settings=worker_resources.settings.model_copy(update={"settle_batch_size": BATCH})
    )
    monkeypatch.setattr(settlement, "resources", lambda: small)
    sleeps: list[float] = []
    state = SimpleNamespace(sleeps=sleeps, during_sleep=lambda: None)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        state.during_sleep()

    monkeypatch.setattr(settlement, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    return state


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    return alice, bob


def _submit(sessions, alice, bob, count: int) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    ids = []
    for _ in range(count):
        with sessions.begin() as s:
            movement = MoneyMovement(alice.account.id, bob.account.id, 1, "USD", None)
            accepted = submit_transfer(
                s, user=alice.user, idempotency_key=str(uuid.uuid4()), movement=movement, partitions=PARTITIONS
            )
            ids.append(accepted.transfer.id)
    return ids


def _finals(sessions, ids: list[uuid.UUID]) -> list[Transfer]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(Transfer).where(Transfer.id.in_(ids))))


def test_a_backlog_never_waits_but_its_last_partial_batch_does_once(sessions, pair, drainer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ids = _submit(sessions, alice, bob, 2 * BATCH + 1)
    assert settlement.settle_partition.run(partition_of(alice.account.id, PARTITIONS)) == len(ids)
    assert drainer.sleeps == [settlement_linger()]  # before the last batch of 1, not before the full ones
    assert {t.status for t in _finals(sessions, ids)} == {TransferStatus.COMPLETED}


def test_a_partial_batch_takes_in_what_arrives_while_it_waits(sessions, pair, drainer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    ids = _submit(sessions, alice, bob, 1)
    drainer.during_sleep = lambda: ids.extend(_submit(sessions, alice, bob, 2))
    assert settlement.settle_partition.run(partition_of(alice.account.id, PARTITIONS)) == 3
    finals = _finals(sessions, ids)
    assert len(drainer.sleeps) == 1 and {t.status for t in finals} == {TransferStatus.COMPLETED}
    assert len({t.completed_at for t in finals}) == 1  # one transaction's now(): one batch


def test_an_empty_partition_returns_at_once(drainer) -> None:  # type: ignore[no-untyped-def]
    assert settlement.settle_partition.run(partition_of(uuid.uuid4(), PARTITIONS)) == 0
    assert drainer.sleeps == []


def settlement_linger() -> float:
    return settlement.resources().settings.settle_linger_ms / 1000
