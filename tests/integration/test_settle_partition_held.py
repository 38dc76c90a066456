"""A drainer whose partition another transaction holds (a live drainer, or one paused mid-batch)
leaves, and has the partition looked at again once a paused holder's transaction has been ended
by Postgres, instead of leaving its transfers to the next accept or the sweeper."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from core.models import Transfer, TransferStatus
from core.transfers import drain
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund
from worker import settlement

pytestmark = pytest.mark.commits  # the holder and the drainer are two transactions of their own


def test_a_drainer_that_finds_its_partition_held_looks_again_after_the_idle_timeout(  # type: ignore[no-untyped-def]
    sessions, make_customer, admin_user, worker_resources, redis_client
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    with sessions.begin() as s:
        movement = MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)
        transfer = submit_transfer(s, user=alice.user, idempotency_key=str(uuid.uuid4()), movement=movement).transfer
    look_again = f"settle:look-again:{transfer.partition}"
    redis_client.delete(look_again)
    with sessions.begin() as holder:  # the partition's drainer, paused mid-batch
        assert drain.claim_partition(holder, transfer.partition)
        assert settlement.settle_partition.run(transfer.partition) == 0
        ttl_ms = redis_client.pttl(look_again)
    delay_ms = worker_resources.settings.settle_idle_timeout_ms + 1000
    assert 0 < ttl_ms <= delay_ms  # one look-again nudge, due when a paused holder has been ended
    with sessions() as s:
        assert s.scalar(select(Transfer.status).where(Transfer.id == transfer.id)) == TransferStatus.PENDING
    assert settlement.settle_partition.run(transfer.partition) >= 1  # what the look-again does


def test_a_settlement_transaction_bounds_its_waits_and_names_its_process(sessions, worker_resources) -> None:  # type: ignore[no-untyped-def]
    limits = drain.WaitLimits(lock_timeout_ms=1234, idle_timeout_ms=2345)
    with sessions.begin() as s:
        drain.bound_waits(s, limits, holder="settle p7 pid 42")
        shown = s.execute(
            text(
                "SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'),"
                " application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
        ).one()
    assert tuple(shown) == ("1234ms", "2345ms", "settle p7 pid 42")
    with sessions() as s:  # for that transaction only
        assert s.scalar(text("SELECT current_setting('idle_in_transaction_session_timeout')")) != "2345ms"
