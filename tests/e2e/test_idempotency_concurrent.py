"""20 identical requests at once with one Idempotency-Key: one transfer, one debit."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from core.models import LedgerEntry, Transfer
from tests import factories
from tests.e2e.conftest import bearer, wait_final

pytestmark = pytest.mark.e2e


def test_concurrent_duplicates_make_one_transfer(http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = factories.customer(sessions, settings), factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, alice.account, 1_000)
    headers = {**bearer(http, alice.email), "Idempotency-Key": f"dup-{uuid.uuid4()}"}
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 600,  # two of these would overdraw: a double debit could not hide
        "currency": "USD",
        "pin": factories.PIN,
    }
    barrier = threading.Barrier(20)
    responses = []

    def send() -> None:
        barrier.wait()
        responses.append(http.post("/transfers", json=body, headers=headers))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(202) == 1 and statuses.count(200) == 19, statuses
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    transfer_id = uuid.UUID(ids.pop())
    assert wait_final(sessions, [transfer_id])[transfer_id].status == "COMPLETED"
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Transfer).where(Transfer.initiated_by == alice.user.id)) == 1
        debits = s.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == alice.account.id, LedgerEntry.amount < 0)
        )
        assert [e.amount for e in debits] == [-600]
    assert factories.balance(sessions, alice.account.id) == 400
    assert factories.balance(sessions, bob.account.id) == 600
