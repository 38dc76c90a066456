"""The events feed (GET /events, core/events_feed.py) against real Postgres: a reader polling
while many writers commit out of order gets every committed event once, in feed order; the API's
scoping, filters and refusals; the retention prune."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import any_, func, literal, select, update

from core.events import DomainEvent, EventType, emit
from core.events_feed import RETENTION, FeedEvent, feed_cursor, list_events, prune
from core.resources import webhook_policy
from core.webhooks.relay import relay_events
from tests.factories import PIN, fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer


def put(s, owner: uuid.UUID, tag: str) -> DomainEvent:  # type: ignore[no-untyped-def]
    event = emit(s, EventType.ACCOUNT_CREDITED, {"id": tag}, [owner])
    assert event is not None
    return event


def relay_all(sessions, settings) -> None:  # type: ignore[no-untyped-def]
    lease = webhook_policy(settings).queue_lease
    while True:
        with sessions.begin() as s:
            if relay_events(s, now=datetime.now(UTC), queue_lease=lease, limit=500).events == 0:
                return


def read_all(sessions, user, cursor=None, types=()):  # type: ignore[no-untyped-def]
    items = []
    while True:
        with sessions() as s:
            page = list_events(s, user, after=cursor, types=types, limit=50)
        items += page.items
        if not page.items and page.next_cursor == cursor:
            return items, cursor
        cursor = page.next_cursor


@pytest.mark.commits  # writers, relays and a reader race in threads, each on its own connection
def test_a_polling_reader_gets_every_committed_event_once_in_order_while_writers_commit_out_of_order(  # type: ignore[no-untyped-def]
    sessions, make_customer, settings
) -> None:
    alice = make_customer()
    lease = webhook_policy(settings).queue_lease
    committed: list[tuple[int, uuid.UUID]] = []  # (sequence, id) in commit order
    lock = threading.Lock()
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for i in range(25):
                with sessions() as s, s.begin():
                    e = emit(s, EventType.ACCOUNT_CREDITED, {"id": str(uuid.uuid4()), "n": i}, [alice.user.id])
                    s.flush()  # the sequence is drawn now; the commit comes later, in another order
                    assert e is not None
                    seq, eid = e.sequence, e.id
                    time.sleep(rnd.uniform(0, 0.03))
                    if rnd.random() < 0.1:
                        s.rollback()  # never committed: must never be listed
                        continue
                with lock:
                    committed.append((seq, eid))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def relay() -> None:
        try:
            while not writers_done.is_set():
                with sessions.begin() as s:
                    relay_events(s, now=datetime.now(UTC), queue_lease=lease, limit=7)
                time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    listed: list[FeedEvent] = []
    reader_cursor: list[str | None] = [None]

    def reader() -> None:
        try:
            while not writers_done.is_set():
                with sessions() as s:
                    page = list_events(s, alice.user, after=reader_cursor[0], limit=random.randint(1, 9))
                listed.extend(page.items)
                reader_cursor[0] = page.next_cursor
        except BaseException as exc:
            errors.append(exc)

    # The reader starts from the feed's current end: only this test's events come after it.
    with sessions() as s:
        top = s.scalar(select(func.max(DomainEvent.feed_position)))
        reader_cursor[0] = feed_cursor(top or 0)
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    helpers = [threading.Thread(target=relay) for _ in range(2)] + [threading.Thread(target=reader)]
    for th in writers + helpers:
        th.start()
    for th in writers:
        th.join(120)
    writers_done.set()
    for th in helpers:
        th.join(60)
    assert errors == []
    relay_all(sessions, settings)
    rest, _ = read_all(sessions, alice.user, reader_cursor[0])
    listed += rest

    ids = [e.id for e in listed]
    assert len(ids) == len(set(ids)), "an event was listed twice"
    assert set(ids) == {eid for _, eid in committed}, "the reader's union is not the committed set"
    positions = [e.sequence for e in listed]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # The race happened: some event committed after one with a larger sequence had committed.
    sequences_in_commit_order = [seq for seq, _ in committed]
    assert sequences_in_commit_order != sorted(sequences_in_commit_order)


@pytest.mark.commits
def test_a_late_commit_with_a_smaller_sequence_is_listed_after(sessions, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    relay_all(sessions, settings)
    with sessions() as s:
        start = feed_cursor(s.scalar(select(func.max(DomainEvent.feed_position))) or 0)
    slow = sessions()
    slow.begin()
    early = put(slow, alice.user.id, "early")
    slow.flush()  # the smaller sequence, not committed yet
    with sessions.begin() as s:
        late = put(s, alice.user.id, "late")
    relay_all(sessions, settings)
    first, cursor = read_all(sessions, alice.user, start)
    assert [e.id for e in first] == [late.id]
    slow.commit()
    slow.close()
    relay_all(sessions, settings)
    second, _ = read_all(sessions, alice.user, cursor)
    assert [e.id for e in second] == [early.id]
    assert early.sequence < late.sequence
    assert second[0].sequence > first[0].sequence


def test_events_api_scopes_filters_and_pages(client, sessions, make_customer, admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = make_customer(), make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    headers = login(client, alice.email)
    transfer = client.post(
        "/api/v1/transfers",
        json={
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 300,
            "currency": "USD",
            "pin": PIN,
        },
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert transfer.status_code == 202, transfer.json
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(transfer.json["id"]))
    relay_all(sessions, settings)

    def follow(h, **params):  # type: ignore[no-untyped-def]
        items, cursor = [], None
        while True:
            r = client.get(
                "/api/v1/events", query_string={**params, **({"after": cursor} if cursor else {})}, headers=h
            )
            assert r.status_code == 200, r.json
            assert r.json["next_cursor"]
            items += r.json["items"]
            if not r.json["items"] and r.json["next_cursor"] == cursor:
                return items
            cursor = r.json["next_cursor"]

    mine = [e for e in follow(headers) if e["data"].get("id") == transfer.json["id"]]
    assert [e["type"] for e in mine] == [
        "transfer.pending", "transfer.completed", "account.debited"
    ]  # fmt: skip
    assert mine[1]["data"]["status"] == "COMPLETED" and mine[1]["data"]["amount"] == 300
    assert [e["sequence"] for e in mine] == sorted(e["sequence"] for e in mine)
    with sessions() as s:  # the id is the webhook-id; data is what the webhook carries
        row = s.scalars(select(DomainEvent).where(DomainEvent.id == uuid.UUID(mine[1]["id"]))).one()
        assert mine[1]["data"] == {**row.data, "sequence": row.sequence}
    completed = follow(headers, types="transfer.completed,transfer.failed")
    assert {e["type"] for e in completed} == {"transfer.completed"}
    assert all(e["data"]["id"] != transfer.json["id"] for e in follow(login(client, carol.email)))
    admin_seen = follow(login(client, admin_user.email), types="account.credited")
    assert any(e["data"]["id"] == transfer.json["id"] for e in admin_seen)


def test_events_api_refuses_bad_input(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    headers = login(client, make_customer().email)
    for params, field in (
        ({"types": "transfer.completed,transfer.bogus"}, "types"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"after": "not-a-cursor"}, "cursor"),
        ({"after": "WyJ0cmFuc2ZlcnMuY3JlYXRlZF9hdCIsMV0"}, "cursor"),  # another list's tag
    ):
        body = assert_problem(
            client.get("/api/v1/events", query_string=params, headers=headers), 422, "VALIDATION_ERROR"
        )
        assert field in str(body.get("errors")), (params, body)
    assert client.get("/api/v1/events").status_code == 401


@pytest.mark.commits
def test_prune_deletes_only_events_past_the_retention_in_batches(sessions, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with sessions.begin() as s:
        old = [put(s, alice.user.id, f"old{i}") for i in range(5)]
        young = put(s, alice.user.id, "young")
    relay_all(sessions, settings)
    now = datetime.now(UTC)
    with sessions.begin() as s:
        # Aged, and moved to the feed's front (below every real position): the oldest listed.
        for i, e in enumerate(old):
            s.execute(
                update(DomainEvent)
                .where(DomainEvent.id == e.id)
                .values(occurred_at=now - RETENTION - timedelta(hours=1), feed_position=-10 + i)
            )
    with sessions.begin() as s:
        assert prune(s, now=now, batch=3) == 3
    with sessions.begin() as s:
        assert prune(s, now=now, batch=3) == 2
    with sessions.begin() as s:
        assert prune(s, now=now, batch=3) == 0
        left = set(s.scalars(select(DomainEvent.id).where(literal(alice.user.id) == any_(DomainEvent.owner_ids))))
    assert left == {young.id}
