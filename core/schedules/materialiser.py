"""Running schedules: each due occurrence becomes one ordinary transfer, and each settled
transfer's outcome becomes its run's status.

Exactly once per occurrence, whoever runs this and however often: a schedule row is taken with
``FOR UPDATE SKIP LOCKED`` (a second materialiser passes it by), the run row and its transfer
are written in the transaction that advances ``next_run_at`` (a crash before COMMIT leaves the
occurrence due, after it leaves it done), the run's key is (schedule, occurrence) and the
transfer's idempotency key is ``scheduled:{id}:{occurrence}`` (the owner's, so a replay finds
it). Occurrences missed while nothing ran are due at once and go oldest first; a schedule's
next occurrence waits until the previous run's transfer is final, so a ``fail`` policy pauses
the schedule before anything more is sent.

``now`` is a parameter (the task passes the database's clock), so a test drives a year.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import DomainError
from core.models import Transfer, TransferStatus, User
from core.schedules import rules
from core.schedules.models import RunStatus, ScheduledRun, ScheduledTransfer, ScheduleStatus, ShortFundsPolicy
from core.schedules.service import finish_if_done
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer

RETRY_EVERY = timedelta(hours=1)
SHORT_OF_FUNDS = "INSUFFICIENT_FUNDS"


@dataclass
class Tick:
    """What one pass did: the partitions to nudge (after COMMIT) and how many rows it moved."""

    partitions: set[int] = field(default_factory=set)
    transfers: int = 0
    recorded: int = 0


def occurrence_key(schedule_id: uuid.UUID, occurrence: datetime, attempt: int = 1) -> str:
    """The transfer's idempotency key: the contract's ``scheduled:{id}:{occurrence}``; a retry's
    attempt is a new transfer (a FAILED transfer keeps its key) and says which attempt it is."""
    key = f"scheduled:{schedule_id}:{occurrence.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return key if attempt == 1 else f"{key}:attempt-{attempt}"


def run_due(session: Session, *, now: datetime, partitions: int = 1, limit: int = 100) -> Tick:
    """One pass: record settled outcomes, send due retries, then materialise due occurrences."""
    tick = Tick()
    record_outcomes(session, now=now, tick=tick, limit=limit)
    send_retries(session, now=now, partitions=partitions, tick=tick, limit=limit)
    materialise(session, now=now, partitions=partitions, tick=tick, limit=limit)
    return tick


def record_outcomes(session: Session, *, now: datetime, tick: Tick, limit: int) -> None:
    """PENDING runs whose transfer is final take its outcome, with the short-funds policy
    applied to a transfer that FAILED for want of funds."""
    rows = session.execute(
        select(ScheduledRun, Transfer.status, Transfer.failure_code)
        .join(Transfer, Transfer.id == ScheduledRun.transfer_id)
        .where(
            ScheduledRun.status == RunStatus.PENDING,
            ScheduledRun.retry_at.is_(None),
            Transfer.status.in_((TransferStatus.COMPLETED, TransferStatus.FAILED)),
        )
        .order_by(ScheduledRun.occurrence)
        .limit(limit)
        .with_for_update(of=ScheduledRun, skip_locked=True, **ROW_LOCK)
    ).all()
    for run, status, failure_code in rows:
        schedule = session.scalars(
            select(ScheduledTransfer).where(ScheduledTransfer.id == run.schedule_id).with_for_update(**ROW_LOCK)
        ).one()
        _record(session, schedule, run, status, failure_code, now)
        tick.recorded += 1
        finish_if_done(session, schedule)


def _record(
    session: Session,
    schedule: ScheduledTransfer,
    run: ScheduledRun,
    status: TransferStatus,
    failure_code: str | None,
    now: datetime,
) -> None:
    if status is TransferStatus.COMPLETED:
        run.status = RunStatus.COMPLETED
    elif failure_code != SHORT_OF_FUNDS:
        run.status, run.failure_code = RunStatus.FAILED, failure_code
    elif schedule.on_insufficient_funds is ShortFundsPolicy.SKIP:
        run.status, run.failure_code = RunStatus.SKIPPED, failure_code
    elif schedule.on_insufficient_funds is ShortFundsPolicy.RETRY and _retry_at(run) is not None:
        run.retry_at = _retry_at(run)  # stays PENDING, with no transfer in flight
    else:
        run.status, run.failure_code = RunStatus.FAILED, failure_code
        if schedule.on_insufficient_funds is ShortFundsPolicy.FAIL and schedule.status is ScheduleStatus.ACTIVE:
            schedule.status = ScheduleStatus.PAUSED
            _audit(session, schedule, "scheduled_transfer.paused", {"occurrence": _iso(run.occurrence)})
    _audit(
        session,
        schedule,
        "scheduled_transfer.run_recorded",
        {"occurrence": _iso(run.occurrence), "status": run.status.value, "transfer_id": str(run.transfer_id)},
    )


def _retry_at(run: ScheduledRun) -> datetime | None:
    """Hourly after the occurrence, while still in the occurrence's UTC day."""
    at = run.occurrence + run.attempts * RETRY_EVERY
    day_end = datetime.combine(run.occurrence.astimezone(UTC).date() + timedelta(days=1), time(), UTC)
    return at if at < day_end else None


def send_retries(session: Session, *, now: datetime, partitions: int, tick: Tick, limit: int) -> None:
    """Runs of ACTIVE schedules whose retry is due get their next attempt's transfer."""
    runs = session.scalars(
        select(ScheduledRun)
        .join(ScheduledTransfer, ScheduledTransfer.id == ScheduledRun.schedule_id)
        .where(
            ScheduledRun.status == RunStatus.PENDING,
            ScheduledRun.retry_at <= now,
            ScheduledTransfer.status == ScheduleStatus.ACTIVE,
        )
        .order_by(ScheduledRun.retry_at)
        .limit(limit)
        .with_for_update(of=ScheduledRun, skip_locked=True, **ROW_LOCK)
    ).all()
    for run in runs:
        schedule = session.get_one(ScheduledTransfer, run.schedule_id)
        run.attempts += 1
        run.retry_at = None
        _send(session, schedule, run, partitions, tick)


def materialise(session: Session, *, now: datetime, partitions: int, tick: Tick, limit: int) -> None:
    """Due occurrences of ACTIVE schedules, oldest first, one per schedule whose previous run
    is no longer in flight."""
    in_flight = exists().where(
        ScheduledRun.schedule_id == ScheduledTransfer.id,
        ScheduledRun.status == RunStatus.PENDING,
        ScheduledRun.retry_at.is_(None),
    )
    schedules = session.scalars(
        select(ScheduledTransfer)
        .where(
            ScheduledTransfer.status == ScheduleStatus.ACTIVE,
            ScheduledTransfer.next_run_at <= now,
            ~in_flight,
        )
        .order_by(ScheduledTransfer.next_run_at, ScheduledTransfer.id)
        .limit(limit)
        .with_for_update(skip_locked=True, **ROW_LOCK)
    ).all()
    for schedule in schedules:
        occurrence = schedule.next_run_at
        assert occurrence is not None
        inserted = session.execute(
            insert(ScheduledRun)
            .values(schedule_id=schedule.id, occurrence=occurrence, status=RunStatus.PENDING, attempts=1)
            .on_conflict_do_nothing()
            .returning(ScheduledRun.occurrence)
        ).first()
        rule = rules.build(schedule.start_at, schedule.rrule, until=schedule.until, count=schedule.count)
        schedule.next_run_at = rules.next_after(rule, occurrence)
        if inserted is not None:  # never otherwise: the row lock and next_run_at say it is not done
            run = session.get_one(ScheduledRun, (schedule.id, occurrence))
            _send(session, schedule, run, partitions, tick)
        finish_if_done(session, schedule)


def _send(session: Session, schedule: ScheduledTransfer, run: ScheduledRun, partitions: int, tick: Tick) -> None:
    """The run's transfer, accepted as the owner's: the same checks and PENDING row as
    ``POST /transfers`` (limits, accounts, KYC), the PIN given when the schedule was made. A
    refusal now (a frozen account, a revoked KYC) ends the run FAILED with its code."""
    owner = session.get_one(User, schedule.user_id)
    movement = MoneyMovement(
        schedule.source_account_id,
        schedule.destination_account_id,
        schedule.amount,
        schedule.currency,
        schedule.reference,
        metadata=schedule.metadata_,
    )
    try:
        with session.begin_nested():
            accepted = submit_transfer(
                session,
                user=owner,
                idempotency_key=occurrence_key(schedule.id, run.occurrence, run.attempts),
                movement=movement,
                partitions=partitions,
            )
    except DomainError as refused:
        run.status, run.failure_code, run.transfer_id = RunStatus.FAILED, refused.code, None
        _audit(
            session,
            schedule,
            "scheduled_transfer.run_refused",
            {"occurrence": _iso(run.occurrence), "code": refused.code},
        )
        tick.recorded += 1
        return
    run.transfer_id = accepted.transfer.id
    tick.transfers += 1
    tick.partitions.add(accepted.transfer.partition)
    _audit(
        session,
        schedule,
        "scheduled_transfer.run_sent",
        {"occurrence": _iso(run.occurrence), "attempt": run.attempts, "transfer_id": str(accepted.transfer.id)},
    )


def _audit(session: Session, schedule: ScheduledTransfer, action: str, details: dict[str, object]) -> None:
    audit.record(
        session,
        action=action,
        entity_type="scheduled_transfer",
        entity_id=schedule.id,
        actor_id=None,
        details=details,
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
