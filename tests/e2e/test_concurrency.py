"""200 transfers in random directions among 5 accounts, settled by two worker processes."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from core.models import Account, LedgerEntry, TransferStatus
from tests import factories
from tests.e2e.conftest import bearer, wait_final

pytestmark = pytest.mark.e2e

START = 10_000


def test_random_transfers_conserve_money(http, sessions, settings, admin_user, workers) -> None:  # type: ignore[no-untyped-def]
    people = [factories.customer(sessions, settings) for _ in range(5)]
    for p in people:
        factories.fund(sessions, admin_user, p.account, START)
    auth = {p.account.id: bearer(http, p.email) for p in people}
    rng = random.Random(1234)
    plan = []
    for _ in range(200):
        src, dst = rng.sample(people, 2)
        # Large enough amounts that some transfers must fail for lack of funds.
        plan.append((src.account.id, dst.account.id, rng.randint(1, 4_000)))

    def send(step: tuple[uuid.UUID, uuid.UUID, int]) -> str:
        src, dst, amount = step
        r = http.post(
            "/transfers",
            json={
                "source_account_id": str(src),
                "destination_account_id": str(dst),
                "amount": amount,
                "currency": "USD",
                "pin": factories.PIN,
            },
            headers={**auth[src], "Idempotency-Key": str(uuid.uuid4())},
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = [uuid.UUID(i) for i in pool.map(send, plan)]

    final = wait_final(sessions, ids, timeout=180)
    statuses = [t.status for t in final.values()]
    assert set(statuses) <= {TransferStatus.COMPLETED, TransferStatus.FAILED}
    assert all(t.failure_code == "INSUFFICIENT_FUNDS" for t in final.values() if t.status == TransferStatus.FAILED)

    account_ids = [p.account.id for p in people]
    with sessions() as s:
        balances = dict(s.execute(select(Account.id, Account.balance).where(Account.id.in_(account_ids))).all())
        sums = dict(
            s.execute(
                select(LedgerEntry.account_id, func.sum(LedgerEntry.amount))
                .where(LedgerEntry.account_id.in_(account_ids))
                .group_by(LedgerEntry.account_id)
            ).all()
        )
        entries_per_transfer = dict(
            s.execute(
                select(LedgerEntry.transfer_id, func.count())
                .where(LedgerEntry.transfer_id.in_(ids))
                .group_by(LedgerEntry.transfer_id)
            ).all()
        )
    assert sum(balances.values()) == 5 * START
    assert all(b >= 0 for b in balances.values())
    assert balances == sums
    for t in final.values():
        assert entries_per_transfer.get(t.id, 0) == (2 if t.status == TransferStatus.COMPLETED else 0)

    # Both worker processes took part.
    for w in workers:
        assert "transfer_settled" in w.log(), f"{w.name} settled nothing"
