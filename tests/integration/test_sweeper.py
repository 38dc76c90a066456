"""The sweeper re-publishes a stuck PENDING transfer once per age window, never a final one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from core.transfers.sweep import claim_stale_pending
from tests.factories import fund
from tests.settling import settle_transfer

AGE = timedelta(seconds=30)


def test_stale_pending_is_claimed_once_per_window(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    ids = []
    for _ in range(2):
        with sessions.begin() as s:
            t = submit_transfer(
                s,
                user=alice.user,
                idempotency_key=str(uuid.uuid4()),
                movement=MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None),
                request_id="req-sweep",
            ).transfer
            ids.append(t.id)
    with sessions.begin() as s:
        settle_transfer(s, ids[1])  # final: never swept

    def claim(now: datetime) -> set[uuid.UUID]:
        with sessions.begin() as s:
            return {r.transfer_id for r in claim_stale_pending(s, older_than=AGE, now=now, limit=10_000)}

    now = datetime.now(UTC)
    assert ids[0] not in claim(now)  # too young
    later = now + 2 * AGE
    assert ids[0] in claim(later)
    assert ids[0] not in claim(later + AGE / 2)  # re-published recently: left alone
    assert ids[0] in claim(later + 2 * AGE)  # still stuck a window later: once more
    assert ids[1] not in claim(later + 10 * AGE)
    with sessions.begin() as s:
        rows = claim_stale_pending(s, older_than=AGE, now=later + 20 * AGE, limit=10_000)
    assert "req-sweep" in {r.request_id for r in rows if r.transfer_id == ids[0]}
