"""Scheduled transfers (API.md "Scheduled transfers"): each occurrence becomes exactly one
ordinary transfer, outcomes become runs, the short-funds policies apply to the settled outcome.

The materialiser takes ``now`` as a parameter, so these tests drive a year on a clock of their own;
the transfers themselves are accepted and settled by the real services on the real database."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import database_now
from core.models import Transfer, TransferStatus
from core.resources import Policies
from core.schedules import service
from core.schedules.materialiser import occurrence_key, run_due
from core.schedules.models import RunStatus, ScheduledRun, ScheduledTransfer, ScheduleStatus, ShortFundsPolicy
from core.transfers.settle import settle_batch
from tests.factories import PIN, balance, fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer


def db_now(sessions: sessionmaker[Session]) -> datetime:
    with sessions() as s:
        return database_now(s)


def make_schedule(  # type: ignore[no-untyped-def]
    sessions, settings, alice, bob, *, amount: int = 1_000, rrule: str | None = "FREQ=MONTHLY;BYMONTHDAY=1",
    count: int | None = 12, policy: ShortFundsPolicy = ShortFundsPolicy.FAIL, start_at: datetime | None = None,
) -> ScheduledTransfer:  # fmt: skip
    start = start_at or db_now(sessions) + timedelta(minutes=1)
    with sessions.begin() as s:
        created = service.create(
            s,
            user=alice.user,
            idempotency_key=str(uuid.uuid4()),
            request=service.ScheduleRequest(
                alice.account.id, bob.account.id, amount, "USD", "rent", start, rrule, None, count, policy
            ),
            pin=PIN,
            pin_policy=Policies.from_settings(settings).pins,
        )
    assert created.schedule is not None and created.created
    return created.schedule


def tick(sessions: sessionmaker[Session], now: datetime, schedule_id: uuid.UUID) -> None:
    """One beat at ``now``, then settle what it sent (a drainer's work), then one more beat to
    record the outcomes, as the next tick would."""
    with sessions.begin() as s:
        run_due(s, now=now)
    settle_in_flight(sessions, [schedule_id])
    with sessions.begin() as s:
        run_due(s, now=now)


def settle_in_flight(sessions: sessionmaker[Session], schedule_ids: list[uuid.UUID]) -> None:
    """Settle the schedules' PENDING transfers as a drainer does: ONE ``settle_batch`` per
    transaction, which locks the transfers (accept order) and then their accounts (id order).
    Calling ``settle_transfer`` once per transfer in one transaction locks a second transfer
    after the first's accounts; two threads doing that deadlocked (40P01) on this test."""
    with sessions.begin() as s:
        settle_batch(s, [t for schedule_id in schedule_ids for t in in_flight(s, schedule_id)])


def in_flight(s: Session, schedule_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        s.scalars(
            select(ScheduledRun.transfer_id)
            .join(Transfer, Transfer.id == ScheduledRun.transfer_id)
            .where(ScheduledRun.schedule_id == schedule_id, Transfer.status == TransferStatus.PENDING)
        )
    )


def runs(sessions: sessionmaker[Session], schedule_id: uuid.UUID) -> list[ScheduledRun]:
    with sessions() as s:
        return service.runs_of(s, schedule_id)


def schedule_of(sessions: sessionmaker[Session], schedule_id: uuid.UUID) -> ScheduledTransfer:
    with sessions() as s:
        return s.get_one(ScheduledTransfer, schedule_id)


def transfers_of(sessions: sessionmaker[Session], alice: Any, schedule_id: uuid.UUID) -> list[Transfer]:
    with sessions() as s:
        return list(
            s.scalars(
                select(Transfer)
                .where(
                    Transfer.initiated_by == alice.user.id, Transfer.idempotency_key.like(f"scheduled:{schedule_id}:%")
                )
                .order_by(Transfer.created_at)
            )
        )


def test_a_year_of_monthly_rent_runs_twelve_times_then_finishes(sessions, settings, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 20_000)
    schedule = make_schedule(sessions, settings, alice, bob)
    first = schedule.next_run_at
    assert first is not None and first.day == 1
    assert (first.hour, first.minute, first.second) == (
        schedule.start_at.hour,
        schedule.start_at.minute,
        schedule.start_at.second,
    )

    tick(sessions, first - timedelta(seconds=1), schedule.id)  # not due yet
    assert runs(sessions, schedule.id) == []

    occurrence = first
    for month in range(12):
        tick(sessions, occurrence + timedelta(seconds=30), schedule.id)
        done = runs(sessions, schedule.id)
        assert [r.status for r in done] == [RunStatus.COMPLETED] * (month + 1)
        assert done[-1].occurrence == occurrence
        nxt = schedule_of(sessions, schedule.id).next_run_at
        if month < 11:
            assert nxt is not None and nxt.day == 1 and nxt.month == (occurrence.month % 12) + 1
            occurrence = nxt
    assert schedule_of(sessions, schedule.id).status is ScheduleStatus.FINISHED
    assert balance(sessions, alice.account.id) == 20_000 - 12 * 1_000
    assert balance(sessions, bob.account.id) == 12 * 1_000
    transfers = transfers_of(sessions, alice, schedule.id)
    assert [t.idempotency_key for t in transfers] == [
        occurrence_key(schedule.id, r.occurrence) for r in runs(sessions, schedule.id)
    ]
    tick(sessions, occurrence + timedelta(days=400), schedule.id)  # nothing more, ever
    assert len(transfers_of(sessions, alice, schedule.id)) == 12


def test_occurrences_missed_while_down_all_run_oldest_first_and_once(
    sessions, settings, make_customer, admin_user
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 20_000)
    schedule = make_schedule(sessions, settings, alice, bob, count=None)
    assert schedule.next_run_at is not None
    back = schedule.next_run_at + timedelta(days=95)  # down for four occurrences
    for _ in range(6):  # a few beats after the restart (and a redelivered one) catch up
        tick(sessions, back, schedule.id)
    done = runs(sessions, schedule.id)
    assert len(done) == 4 and all(r.status is RunStatus.COMPLETED for r in done)
    assert [r.occurrence for r in done] == sorted(r.occurrence for r in done)
    created = [t.created_at for t in transfers_of(sessions, alice, schedule.id)]
    assert created == sorted(created) and len(created) == 4


def test_short_funds_fail_pauses_and_resume_goes_on_from_the_next_occurrence(
    sessions, settings, make_customer, admin_user
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    schedule = make_schedule(sessions, settings, alice, bob, policy=ShortFundsPolicy.FAIL, count=None)
    first = schedule.next_run_at
    assert first is not None
    tick(sessions, first + timedelta(seconds=5), schedule.id)
    [run] = runs(sessions, schedule.id)
    assert run.status is RunStatus.FAILED and run.failure_code == "INSUFFICIENT_FUNDS"
    assert schedule_of(sessions, schedule.id).status is ScheduleStatus.PAUSED
    tick(sessions, first + timedelta(days=70), schedule.id)  # paused: nothing runs
    assert len(runs(sessions, schedule.id)) == 1
    with sessions.begin() as s:
        resumed = service.resume(s, schedule.id, alice.user)
        now = database_now(s)
    assert resumed.status is ScheduleStatus.ACTIVE and resumed.next_run_at is not None and resumed.next_run_at >= now
    assert resumed.next_run_at == first  # the first is still ahead on the real clock; not run again
    assert len(runs(sessions, schedule.id)) == 1


def test_short_funds_skip_goes_on(sessions, settings, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    schedule = make_schedule(sessions, settings, alice, bob, policy=ShortFundsPolicy.SKIP, count=2)
    first = schedule.next_run_at
    assert first is not None
    tick(sessions, first + timedelta(seconds=5), schedule.id)
    fund(sessions, admin_user, alice.account, 5_000)
    second = schedule_of(sessions, schedule.id).next_run_at
    assert second is not None and second > first
    tick(sessions, second + timedelta(seconds=5), schedule.id)
    assert [r.status for r in runs(sessions, schedule.id)] == [RunStatus.SKIPPED, RunStatus.COMPLETED]
    assert schedule_of(sessions, schedule.id).status is ScheduleStatus.FINISHED


def test_short_funds_retry_hourly_until_the_end_of_the_utc_day(sessions, settings, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    now = db_now(sessions)
    start = datetime(now.year + 1, 1, 1, 21, 30, 0, tzinfo=UTC)  # 21:30: retries at 22:30 and 23:30
    schedule = make_schedule(
        sessions, settings, alice, bob, policy=ShortFundsPolicy.RETRY, rrule="FREQ=DAILY", count=2, start_at=start
    )
    tick(sessions, start + timedelta(seconds=5), schedule.id)
    [run] = runs(sessions, schedule.id)
    assert run.status is RunStatus.PENDING and run.retry_at == start + timedelta(hours=1)
    tick(sessions, start + timedelta(minutes=59), schedule.id)  # not yet
    assert runs(sessions, schedule.id)[0].attempts == 1
    tick(sessions, start + timedelta(hours=1, seconds=5), schedule.id)
    [run] = runs(sessions, schedule.id)
    assert run.attempts == 2 and run.status is RunStatus.PENDING and run.retry_at == start + timedelta(hours=2)
    fund(sessions, admin_user, alice.account, 1_000)
    tick(sessions, start + timedelta(hours=2, seconds=5), schedule.id)
    [run] = runs(sessions, schedule.id)
    assert run.status is RunStatus.COMPLETED and run.attempts == 3
    # The next day's occurrence fails for good once the day ends: 21:30, 22:30, 23:30, then FAILED.
    for hours in (24, 25, 26, 27):
        tick(sessions, start + timedelta(hours=hours, seconds=5), schedule.id)
    last = runs(sessions, schedule.id)[-1]
    assert last.status is RunStatus.FAILED and last.attempts == 3 and last.failure_code == "INSUFFICIENT_FUNDS"
    assert schedule_of(sessions, schedule.id).status is ScheduleStatus.FINISHED
    assert len(transfers_of(sessions, alice, schedule.id)) == 6
    assert balance(sessions, bob.account.id) == 1_000


@pytest.mark.commits
def test_two_materialisers_at_once_make_one_transfer_per_occurrence(
    committed_sessions, settings, make_customer, admin_user
) -> None:  # type: ignore[no-untyped-def]
    sessions = committed_sessions
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100_000)
    schedules = [
        make_schedule(sessions, settings, alice, bob, rrule="FREQ=DAILY", count=3, amount=10) for _ in range(5)
    ]
    at = max(s.next_run_at for s in schedules if s.next_run_at) + timedelta(days=3)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            barrier.wait()
            for _ in range(4):
                with sessions.begin() as s:
                    run_due(s, now=at)
                settle_in_flight(sessions, [sched.id for sched in schedules])
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for _ in range(4):  # let the last outcomes be recorded
        for sched in schedules:
            tick(sessions, at, sched.id)
    with sessions() as s:
        for sched in schedules:
            keys = s.scalars(
                select(Transfer.idempotency_key).where(Transfer.idempotency_key.like(f"scheduled:{sched.id}:%"))
            ).all()
            assert len(keys) == 3 == len(set(keys))
            assert s.scalar(select(func.count()).where(ScheduledRun.schedule_id == sched.id)) == 3
            assert s.get_one(ScheduledTransfer, sched.id).status is ScheduleStatus.FINISHED
    assert balance(sessions, bob.account.id) == 5 * 3 * 10


# ---- the API ---------------------------------------------------------------------------------------


def body(alice, bob, start: datetime, **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 2_500,
        "currency": "USD",
        "pin": PIN,
        "start_at": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rrule": "FREQ=MONTHLY;BYMONTHDAY=1",
        "on_insufficient_funds": "skip",
        **over,
    }


def test_api_create_replay_get_pause_resume_cancel(client, sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    headers = {**login(client, alice.email), "Idempotency-Key": str(uuid.uuid4())}
    start = db_now(sessions) + timedelta(hours=1)
    r = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start), headers=headers)
    assert r.status_code == 201, r.json
    created = r.json
    assert created["status"] == "ACTIVE" and created["next_run_at"] and "pin" not in created
    again = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start), headers=headers)
    assert again.status_code == 200 and again.json["id"] == created["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start, amount=1), headers=headers)
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")

    got = client.get(f"/api/v1/scheduled-transfers/{created['id']}", headers=headers)
    assert got.status_code == 200 and got.json["runs"] == []
    listed = client.get("/api/v1/scheduled-transfers", headers=headers)
    assert [s["id"] for s in listed.json["items"]] == [created["id"]]
    for action, status in (("pause", "PAUSED"), ("resume", "ACTIVE"), ("cancel", "CANCELLED")):
        r = client.post(f"/api/v1/scheduled-transfers/{created['id']}/{action}", headers=headers)
        assert r.status_code == 200 and r.json["status"] == status, r.json
    bobs = login(client, bob.email)
    assert_problem(client.get(f"/api/v1/scheduled-transfers/{created['id']}", headers=bobs), 404, "NOT_FOUND")
    assert_problem(client.post(f"/api/v1/scheduled-transfers/{created['id']}/pause", headers=bobs), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("over", "shift"),
    [
        ({"rrule": "FREQ=MINUTELY"}, timedelta(hours=1)),  # > 1,000 a year
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, timedelta(hours=1)),  # never
        ({"rrule": "NOT A RULE"}, timedelta(hours=1)),
        # never, and dateutil would walk every second to the year 9999 to find out: refused at once
        ({"rrule": "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30"}, timedelta(hours=1)),
        ({"rrule": "FREQ=HOURLY;INTERVAL=2;BYHOUR=3"}, timedelta(hours=1)),
        ({}, -timedelta(hours=1)),  # in the past
        ({}, timedelta(days=3700)),  # more than ten years out
        ({"until": "2020-01-01T00:00:00Z"}, timedelta(hours=1)),  # until before start_at
    ],
)
def test_api_refuses_an_invalid_schedule(client, sessions, make_customer, over, shift) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    headers = {**login(client, alice.email), "Idempotency-Key": str(uuid.uuid4())}
    began = time.monotonic()
    r = client.post(
        "/api/v1/scheduled-transfers", json=body(alice, bob, db_now(sessions) + shift, **over), headers=headers
    )
    assert_problem(r, 422, "SCHEDULE_INVALID")
    assert time.monotonic() - began < 5  # a rule dateutil cannot search quickly is refused, not searched
    with sessions() as s:
        assert s.scalar(select(func.count()).where(ScheduledTransfer.user_id == alice.user.id)) == 0


def test_api_checks_the_pin_at_creation(client, sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    headers = {**login(client, alice.email), "Idempotency-Key": str(uuid.uuid4())}
    start = db_now(sessions) + timedelta(hours=1)
    r = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start, pin="9999"), headers=headers)
    assert_problem(r, 403, "INVALID_PIN")
    r = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start), headers=headers)
    assert r.status_code == 201  # the refused request bound no key


def test_a_crash_before_commit_leaves_the_occurrence_due_and_a_redelivered_tick_adds_nothing(  # type: ignore[no-untyped-def]
    sessions, settings, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 5_000)
    schedule = make_schedule(sessions, settings, alice, bob, rrule=None, count=None)
    assert schedule.next_run_at is not None
    at = schedule.next_run_at + timedelta(seconds=1)
    with sessions() as s:  # the worker dies before COMMIT: nothing of the tick remains
        assert run_due(s, now=at).transfers == 1
        s.rollback()
    assert runs(sessions, schedule.id) == [] and transfers_of(sessions, alice, schedule.id) == []
    tick(sessions, at, schedule.id)
    tick(sessions, at, schedule.id)  # the same tick redelivered, and a late one
    [run] = runs(sessions, schedule.id)
    assert run.status is RunStatus.COMPLETED
    assert [t.idempotency_key for t in transfers_of(sessions, alice, schedule.id)] == [
        occurrence_key(schedule.id, run.occurrence)
    ]
    assert schedule_of(sessions, schedule.id).status is ScheduleStatus.FINISHED


@pytest.mark.commits
def test_the_beat_task_creates_the_transfer_within_a_minute_of_its_time(  # type: ignore[no-untyped-def]
    committed_sessions, settings, make_customer, admin_user, worker_resources
) -> None:
    from worker.schedules import run_schedules

    sessions = committed_sessions
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 5_000)
    start = db_now(sessions) + timedelta(seconds=2)
    schedule = make_schedule(sessions, settings, alice, bob, rrule=None, count=None, start_at=start)
    assert schedule.next_run_at is not None
    while db_now(sessions) < schedule.next_run_at:
        time.sleep(0.2)
    run_schedules()
    [transfer] = transfers_of(sessions, alice, schedule.id)
    assert transfer.created_at - schedule.next_run_at < timedelta(seconds=60)
    with sessions.begin() as s:
        settle_transfer(s, transfer.id)
    run_schedules()
    assert [r.status for r in runs(sessions, schedule.id)] == [RunStatus.COMPLETED]
    assert schedule_of(sessions, schedule.id).status is ScheduleStatus.FINISHED


def test_metadata_is_kept_on_the_schedule_and_given_to_each_runs_transfer(  # type: ignore[no-untyped-def]
    client, sessions, make_customer, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 5_000)
    headers = {**login(client, alice.email), "Idempotency-Key": str(uuid.uuid4())}
    start = db_now(sessions) + timedelta(minutes=1)
    tags = {"lease": "flat-3", "tenant": "alice"}
    r = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start, metadata=tags), headers=headers)
    assert r.status_code == 201, r.json
    assert r.json["metadata"] == tags
    schedule_id = uuid.UUID(r.json["id"])
    assert client.get(f"/api/v1/scheduled-transfers/{schedule_id}", headers=headers).json["metadata"] == tags
    with sessions() as s:
        occurrence = s.get_one(ScheduledTransfer, schedule_id).next_run_at
    assert occurrence is not None
    tick(sessions, occurrence + timedelta(seconds=1), schedule_id)
    [transfer] = transfers_of(sessions, alice, schedule_id)
    assert transfer.metadata_ == tags and transfer.status is TransferStatus.COMPLETED
    bad = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    r = client.post("/api/v1/scheduled-transfers", json=body(alice, bob, start, metadata={"k": 1}), headers=bad)
    assert_problem(r, 422, "VALIDATION_ERROR")
