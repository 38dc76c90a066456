"""Creating, reading and steering schedules (the owner's side; core/schedules/materialiser.py runs them)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK, database_now
from core.errors import Conflict, NotFound
from core.identity.pin_checks import PinCheck, PinPolicy, check_pin
from core.models import Account, Role, User
from core.money import validate_amount, validate_currency
from core.pagination import Page, newest_first, paginate
from core.schedules import rules
from core.schedules.models import RunStatus, ScheduledRun, ScheduledTransfer, ScheduleStatus, ShortFundsPolicy
from core.transfers.idempotency import MoneyMovement, find_bound, inserted_or_replay, request_fingerprint, validate_key
from core.transfers.submit import check_accounts, check_source_owned, check_user


@dataclass(frozen=True)
class ScheduleRequest:
    source_account_id: uuid.UUID
    destination_account_id: uuid.UUID
    amount: int
    currency: str
    reference: str | None
    start_at: datetime
    rrule: str | None
    until: datetime | None
    count: int | None
    on_insufficient_funds: ShortFundsPolicy
    metadata: dict[str, str] | None = None  # each run's transfer carries it

    def movement(self) -> MoneyMovement:
        return MoneyMovement(
            self.source_account_id,
            self.destination_account_id,
            self.amount,
            self.currency,
            self.reference,
            metadata=self.metadata,
        )

    def fingerprint(self) -> str:
        return request_fingerprint(
            {k: v if v is None or isinstance(v, dict) else str(v) for k, v in asdict(self).items()}
        )


@dataclass(frozen=True)
class Created:
    schedule: ScheduledTransfer | None  # None: refused by the PIN check
    created: bool
    pin: PinCheck


def create(
    session: Session,
    *,
    user: User,
    idempotency_key: str | None,
    request: ScheduleRequest,
    pin: str,
    pin_policy: PinPolicy,
    request_id: str | None = None,
) -> Created:
    """Check a schedule as a transfer would be checked now (owner, KYC, PIN, accounts, limits)
    plus its rule, and write it ACTIVE bound to its key. The PIN is checked, never stored: each
    run is the owner's standing instruction given here."""
    key = validate_key(idempotency_key)
    request_hash = request.fingerprint()
    replay = _replay(session, user.id, key, request_hash)
    if replay is not None:
        return Created(replay, False, PinCheck.OK)
    validate_amount(request.amount)
    validate_currency(request.currency)
    movement = request.movement()
    check_source_owned(session, user, movement)
    check_user(user)
    now = database_now(session)
    checked = check_pin(
        session, user_id=user.id, pin=pin, policy=pin_policy, now=now, request_id=request_id, known_user=user
    )
    if checked is not PinCheck.OK:
        return Created(None, False, checked)
    ids = [request.source_account_id, request.destination_account_id]
    check_accounts(user, movement, {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))})
    rule = rules.build(request.start_at, request.rrule, until=request.until, count=request.count)
    first = rules.validate(rule, request.start_at, request.until, now)
    schedule = ScheduledTransfer(
        id=uuid.uuid4(),
        user_id=user.id,
        idempotency_key=key,
        request_hash=request_hash,
        **{k: v for k, v in asdict(request).items() if k != "metadata"},
        metadata_=request.metadata,
        status=ScheduleStatus.ACTIVE,
        next_run_at=first,
    )
    schedule, created = inserted_or_replay(_insert(session, schedule), _replay, session, user.id, key, request_hash)
    if not created:
        return Created(schedule, False, PinCheck.OK)
    audit.record(
        session,
        action="scheduled_transfer.created",
        entity_type="scheduled_transfer",
        entity_id=schedule.id,
        actor_id=user.id,
        request_id=request_id,
        details={"amount": request.amount, "currency": request.currency, "rrule": request.rrule},
    )
    return Created(schedule, True, PinCheck.OK)


def _insert(session: Session, schedule: ScheduledTransfer) -> ScheduledTransfer | None:
    """The schedule written, or None when a concurrent duplicate that committed first bound the key."""
    session.add(schedule)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        if getattr(getattr(error.orig, "diag", None), "constraint_name", None) != _KEY_CONSTRAINT:
            raise  # not the key: a real error
        return None
    return schedule


_KEY_CONSTRAINT = "uq_scheduled_transfers_idempotency"


def _replay(session: Session, user_id: uuid.UUID, key: str, request_hash: str) -> ScheduledTransfer | None:
    replay: ScheduledTransfer | None = find_bound(session, ScheduledTransfer.user_id, user_id, key, request_hash)
    return replay


def get_visible(session: Session, schedule_id: uuid.UUID, user: User, *, lock: bool = False) -> ScheduledTransfer:
    stmt = select(ScheduledTransfer).where(ScheduledTransfer.id == schedule_id)
    if lock:
        stmt = stmt.with_for_update(**ROW_LOCK)
    schedule = session.scalar(stmt)
    if schedule is None or (schedule.user_id != user.id and user.role != Role.ADMIN):
        raise NotFound("scheduled transfer not found")
    return schedule


def runs_of(session: Session, schedule_id: uuid.UUID) -> list[ScheduledRun]:
    return list(
        session.scalars(
            select(ScheduledRun).where(ScheduledRun.schedule_id == schedule_id).order_by(ScheduledRun.occurrence)
        )
    )


def list_visible(session: Session, user: User, *, cursor: str | None, limit: int) -> Page[ScheduledTransfer]:
    stmt = select(ScheduledTransfer)
    if user.role != Role.ADMIN:
        stmt = stmt.where(ScheduledTransfer.user_id == user.id)
    return paginate(session, stmt, newest_first(ScheduledTransfer), cursor, limit)


def pause(session: Session, schedule_id: uuid.UUID, user: User, request_id: str | None = None) -> ScheduledTransfer:
    """ACTIVE -> PAUSED: no occurrence is materialised meanwhile (pausing a paused one is a no-op)."""
    schedule = get_visible(session, schedule_id, user, lock=True)
    if schedule.status in (ScheduleStatus.ACTIVE, ScheduleStatus.PAUSED):
        return _set(session, schedule, ScheduleStatus.PAUSED, user, request_id)
    raise Conflict(f"the schedule is {schedule.status.value}")


def resume(session: Session, schedule_id: uuid.UUID, user: User, request_id: str | None = None) -> ScheduledTransfer:
    """PAUSED -> ACTIVE from the next occurrence after now: what fell in the pause, and a FAILED
    occurrence that paused it, are not run again."""
    schedule = get_visible(session, schedule_id, user, lock=True)
    if schedule.status is ScheduleStatus.ACTIVE:
        return schedule
    if schedule.status is not ScheduleStatus.PAUSED:
        raise Conflict(f"the schedule is {schedule.status.value}")
    rule = rules.build(schedule.start_at, schedule.rrule, until=schedule.until, count=schedule.count)
    now = database_now(session)
    schedule.next_run_at = rules.next_from(rule, now)
    _set(session, schedule, ScheduleStatus.ACTIVE, user, request_id)
    finish_if_done(session, schedule)
    return schedule


def cancel(session: Session, schedule_id: uuid.UUID, user: User, request_id: str | None = None) -> ScheduledTransfer:
    """Ends the schedule for good; a run whose transfer is in flight still records its outcome,
    a run waiting for a retry is SKIPPED."""
    schedule = get_visible(session, schedule_id, user, lock=True)
    if schedule.status in (ScheduleStatus.CANCELLED, ScheduleStatus.FINISHED):
        if schedule.status is ScheduleStatus.CANCELLED:
            return schedule
        raise Conflict("the schedule is FINISHED")
    for run in session.scalars(
        select(ScheduledRun).where(
            ScheduledRun.schedule_id == schedule.id,
            ScheduledRun.status == RunStatus.PENDING,
            ScheduledRun.retry_at.is_not(None),
        )
    ):
        run.status, run.retry_at = RunStatus.SKIPPED, None
    schedule.next_run_at = None
    return _set(session, schedule, ScheduleStatus.CANCELLED, user, request_id)


def _set(
    session: Session, schedule: ScheduledTransfer, status: ScheduleStatus, user: User, request_id: str | None
) -> ScheduledTransfer:
    if schedule.status is not status:
        audit.record(
            session,
            action=f"scheduled_transfer.{status.value.lower()}",
            entity_type="scheduled_transfer",
            entity_id=schedule.id,
            actor_id=user.id,
            request_id=request_id,
            details={"from": schedule.status.value},
        )
        schedule.status = status
    session.flush()
    return schedule


def finish_if_done(session: Session, schedule: ScheduledTransfer) -> None:
    """An ACTIVE schedule with no occurrence left and every run recorded is FINISHED."""
    if schedule.status is not ScheduleStatus.ACTIVE or schedule.next_run_at is not None:
        return
    pending = session.scalar(
        select(ScheduledRun.occurrence)
        .where(ScheduledRun.schedule_id == schedule.id, ScheduledRun.status == RunStatus.PENDING)
        .limit(1)
    )
    if pending is None:
        schedule.status = ScheduleStatus.FINISHED
        audit.record(
            session,
            action="scheduled_transfer.finished",
            entity_type="scheduled_transfer",
            entity_id=schedule.id,
            actor_id=None,
            details={},
        )
