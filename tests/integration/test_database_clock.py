"""Accept order and expiry come from the database's clock, never the API host's.

Settlement decides an account's debits in (created_at, id) order and holds expire at their
hold_expires_at; with several API hosts, a host whose clock is hours off must not reorder
debits or move an expiry. Here the app's Python clock (``datetime.now`` in every module of
core/, web/ and worker/ that uses it) is skewed by hours, as on such a host, while Postgres
keeps the true time.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from core.models import Transfer
from core.transfers.holds import expire_due
from tests.authflow import bearer, tokens
from tests.factories import PIN, fund
from worker.hold_expiry import expire_holds

pytestmark = pytest.mark.commits  # the rows must be apart in time, as requests are

CLOSE = timedelta(seconds=30)  # a stamp from Postgres's clock is this near its now(); a skewed one is hours off


@contextmanager
def host_clock_skewed(by: timedelta) -> Iterator[None]:
    """Every ``datetime.now`` the app's modules call returns the true time plus ``by``."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + by

    patched = [
        m
        for name, m in list(sys.modules.items())
        if name.split(".")[0] in ("core", "web", "worker") and getattr(m, "datetime", None) is datetime
    ]
    for module in patched:
        module.datetime = Skewed  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.datetime = datetime  # type: ignore[attr-defined]


def _db_now(sessions: Any) -> datetime:
    with sessions() as s:
        return s.scalar(text("SELECT now()"))  # type: ignore[no-any-return]


def _stamps(sessions: Any, transfer_id: str) -> tuple[datetime, datetime, datetime | None]:
    with sessions() as s:
        t = s.get_one(Transfer, uuid.UUID(transfer_id))
        return t.created_at, t.updated_at, t.hold_expires_at


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    return alice, bob


def _poster(client: Any, alice: Any, bob: Any) -> Callable[..., Any]:
    headers = bearer(tokens(client, alice.email)["access_token"])

    def post(**over: Any) -> Any:
        body = {
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 100,
            "currency": "USD",
            "pin": PIN,
            **over,
        }
        r = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.get_data(as_text=True)
        return r.json

    return post


def test_accept_order_is_the_databases_across_skewed_hosts(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    """A host 6 hours ahead accepts first, a host 6 hours behind second: the first stays first."""
    alice, bob = pair
    post = _poster(client, alice, bob)
    with host_clock_skewed(timedelta(hours=6)):
        first = post()
    with host_clock_skewed(timedelta(hours=-6)):
        second = post()
    now = _db_now(sessions)
    first_at, first_updated, _ = _stamps(sessions, first["id"])
    second_at, _, _ = _stamps(sessions, second["id"])
    assert first_at < second_at
    assert abs(now - first_at) < CLOSE and abs(now - second_at) < CLOSE
    assert first_updated == first_at
    # The API's answer and the transfer.pending event carry the stored stamp, not the host's.
    assert datetime.fromisoformat(first["created_at"]) == first_at
    with sessions() as s:
        data = s.scalar(text("SELECT data FROM webhook_events WHERE data->>'id' = :id"), {"id": first["id"]})
    assert datetime.fromisoformat(data["created_at"]) == first_at


@pytest.mark.parametrize("path", ["one-statement", "careful", "batch"])
def test_every_accept_path_stamps_with_the_databases_clock(client, sessions, pair, path: str) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    headers = bearer(tokens(client, alice.email)["access_token"])
    post = _poster(client, alice, bob)
    if path == "careful":  # a failed PIN on record: the one statement declines, the careful path accepts
        wrong = client.post(
            "/api/v1/transfers",
            json={"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
                  "amount": 100, "currency": "USD", "pin": "0000"},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )  # fmt: skip
        assert wrong.status_code == 403
    with host_clock_skewed(timedelta(hours=-5)):
        if path == "batch":
            item = {"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
                    "amount": 100, "currency": "USD"}  # fmt: skip
            r = client.post(
                "/api/v1/transfers/batch",
                json={"pin": PIN, "items": [{**item, "idempotency_key": str(uuid.uuid4())} for _ in range(2)]},
                headers=headers,
            )
            assert r.status_code in (200, 201, 202, 207), r.get_data(as_text=True)
            ids = [i["transfer"]["id"] for i in r.json["items"]]
        else:
            ids = [post(hold=True, hold_expires_in_seconds=3600)["id"]]
    now = _db_now(sessions)
    for transfer_id in ids:
        created_at, updated_at, expires_at = _stamps(sessions, transfer_id)
        assert abs(now - created_at) < CLOSE, (created_at, now)
        assert updated_at == created_at
        if path != "batch":
            assert expires_at == created_at + timedelta(seconds=3600)
    if path == "batch":
        assert _stamps(sessions, ids[0])[0] < _stamps(sessions, ids[1])[0]  # request order kept


def test_hold_expiry_is_decided_by_the_databases_clock(client, sessions, pair, worker_resources) -> None:  # type: ignore[no-untyped-def]
    """A host 2 hours ahead neither refuses to capture nor sweeps a hold that is due in 1 hour."""
    from tests.settling import settle_transfer

    alice, bob = pair
    headers = bearer(tokens(client, alice.email)["access_token"])
    post = _poster(client, alice, bob)
    capture_me, keep_me = (post(hold=True, hold_expires_in_seconds=3600)["id"] for _ in range(2))
    for transfer_id in (capture_me, keep_me):
        with sessions.begin() as s:
            assert settle_transfer(s, uuid.UUID(transfer_id)).status.value == "HELD"
    with host_clock_skewed(timedelta(hours=2)):
        expire_holds()  # the beat task, run in this process
        with sessions.begin() as s:
            assert keep_me not in expire_due(s)
        r = client.post(
            f"/api/v1/transfers/{capture_me}/capture",
            json={},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.json["status"] == "COMPLETED"
    with sessions() as s:
        assert s.get_one(Transfer, uuid.UUID(keep_me)).status.value == "HELD"


def test_skew_helper_really_skews(sessions) -> None:  # type: ignore[no-untyped-def]
    """The harness itself: the patched modules see the skewed time, Postgres does not."""
    import core.notifications as module

    with host_clock_skewed(timedelta(hours=3)):
        assert module.datetime.now(UTC) - _db_now(sessions) > timedelta(hours=2)


def test_a_pin_lock_ends_by_the_databases_clock(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    """Locked by five wrong PINs, the PIN stays locked for a host whose clock is past the lock's end."""
    alice, bob = pair
    headers = bearer(tokens(client, alice.email)["access_token"])
    body = {"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
            "amount": 100, "currency": "USD"}  # fmt: skip

    def post(pin: str) -> Any:
        key = str(uuid.uuid4())
        return client.post("/api/v1/transfers", json={**body, "pin": pin}, headers={**headers, "Idempotency-Key": key})

    for _ in range(5):
        post("0000")
    assert post(PIN).json["code"] == "PIN_LOCKED"
    with host_clock_skewed(timedelta(hours=1)):  # the lock (15 minutes) is over by this host's clock
        assert post(PIN).json["code"] == "PIN_LOCKED"
        item = {**body, "idempotency_key": str(uuid.uuid4())}
        batch = client.post("/api/v1/transfers/batch", json={"pin": PIN, "items": [item]}, headers=headers)
        assert batch.json["code"] == "PIN_LOCKED", batch.get_data(as_text=True)


def test_the_sweeper_ages_pending_transfers_by_the_databases_clock(  # type: ignore[no-untyped-def]
    client, sessions, pair, worker_resources
) -> None:
    """A worker whose clock is an hour behind still nudges a transfer PENDING for a minute."""
    from worker.sweeper import sweep_pending

    alice, bob = pair
    transfer_id = uuid.UUID(_poster(client, alice, bob)()["id"])
    with sessions.begin() as s:
        s.execute(
            text("UPDATE transfers SET created_at = now() - interval '1 minute' WHERE id = :id AND status = 'PENDING'"),
            {"id": transfer_id},
        )
    with host_clock_skewed(timedelta(hours=-1)):
        sweep_pending()
    with sessions() as s:
        transfer = s.get_one(Transfer, transfer_id)
        assert transfer.status.value != "PENDING" or transfer.requeue_count >= 1


def test_a_refund_is_stamped_when_it_is_inserted_not_when_its_transaction_began(  # type: ignore[no-untyped-def]
    client, sessions, pair, admin_user
) -> None:
    """A refund waits for its original's row lock; its accept order is when it was written."""
    from core.models import User
    from core.transfers.refund import refund_transfer
    from tests.settling import settle_transfer

    alice, bob = pair
    original = uuid.UUID(_poster(client, alice, bob)()["id"])
    with sessions.begin() as s:
        settle_transfer(s, original)
    with sessions.begin() as s:
        began = s.scalar(text("SELECT now()"))
        s.execute(text("SELECT pg_sleep(0.3)"))  # as if waiting for the original's row lock
        refund = refund_transfer(
            s, user=s.get_one(User, bob.user.id), transfer_id=original, idempotency_key=str(uuid.uuid4()),
            amount=50, reason=None,
        )  # fmt: skip
        assert refund.created
    created_at, updated_at, _ = _stamps(sessions, str(refund.transfer.id))
    assert created_at - began >= timedelta(seconds=0.3)
    assert updated_at - created_at < timedelta(milliseconds=50)
