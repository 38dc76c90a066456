"""Setting a transaction PIN and checking one, with the lockout counter in Postgres."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import (
    InvalidPin,
    PinLocked,
    PinNotSet,
    ValidationFailed,
)
from core.identity.pins import hash_pin, validate_pin, verify_pin
from core.models import User


def set_pin(
    session: Session,
    *,
    user_id: uuid.UUID,
    pin: str,
    current_pin: str | None,
    policy: PinPolicy,
    now: datetime,
    request_id: str | None = None,
) -> PinCheck:
    """Set or change the PIN. Changing needs the current PIN, which counts toward the lockout.

    Returns the outcome instead of raising so the caller can commit the failed-attempt counter.
    """
    validate_pin(pin)
    user = session.get_one(User, user_id, with_for_update=ROW_LOCK)
    if user.pin_hash is not None:
        if current_pin is None:
            raise ValidationFailed(
                "current_pin is required to change the PIN",
                errors={"current_pin": ["Required to change an existing PIN."]},
            )
        outcome = _check_locked_user(session, user, current_pin, policy, now, request_id)
        if outcome is not PinCheck.OK:
            return outcome
    user.pin_hash = hash_pin(policy.pepper, user.id, pin)
    user.pin_failed_attempts = 0
    user.pin_locked_until = None
    audit.record(
        session,
        action="pin.changed" if current_pin else "pin.set",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        request_id=request_id,
    )
    return PinCheck.OK


class PinCheck(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_SET = "not_set"

    def raise_if_failed(self) -> None:
        if self is PinCheck.WRONG:
            raise InvalidPin("incorrect PIN")
        if self is PinCheck.LOCKED:
            raise PinLocked("too many incorrect PINs; try again later")
        if self is PinCheck.NOT_SET:
            raise PinNotSet("set a PIN first with PUT /me/pin")


@dataclass(frozen=True)
class PinPolicy:
    pepper: bytes
    max_attempts: int
    lock_for: timedelta


# check_pin's lock-free OK (a PIN set and right, no failures to reset, no lock in force) as a
# SQL condition on the ``users`` row, for the one-statement accept (core/transfers/accept.py):
# ``:pin_hash`` is hash_pin of the PIN given (HMACs of the pepper: comparing digests tells nothing
# about the PIN; NULL never equals it), and a lock's expiry is compared with the database's clock,
# the ``now`` its callers give check_pin. Kept next to check_pin so the two change together.
PIN_OK_WITHOUT_WRITES_SQL = (
    "users.pin_hash = :pin_hash AND users.pin_failed_attempts = 0"
    " AND (users.pin_locked_until IS NULL OR users.pin_locked_until <= now())"
)


def check_pin(
    session: Session,
    *,
    user_id: uuid.UUID,
    pin: str,
    policy: PinPolicy,
    now: datetime,
    request_id: str | None = None,
    known_user: User | None = None,
) -> PinCheck:
    """Verify a PIN and keep the lockout counter in Postgres (holds across processes and restarts).

    ``known_user``: the user's row as read earlier in this request (the API's authenticated user),
    enough for the lock-free path; anything that writes re-reads the row.

    A right PIN with no failures to reset writes nothing and takes no lock, so one customer's
    transfers are not serialised on their user row. Anything that writes (a wrong PIN, a reset
    of the counter) re-reads the row under ``FOR NO KEY UPDATE`` and decides there, so
    concurrent guesses cannot slip past the attempt limit.
    """
    user = known_user if known_user is not None and known_user.id == user_id else session.get_one(User, user_id)
    if user.pin_hash is None:
        return PinCheck.NOT_SET
    if user.pin_locked_until is not None and user.pin_locked_until > now:
        return PinCheck.LOCKED
    if user.pin_failed_attempts == 0 and verify_pin(policy.pepper, user.id, pin, user.pin_hash):
        return PinCheck.OK
    user = session.get_one(User, user_id, with_for_update=ROW_LOCK, populate_existing=True)
    return _check_locked_user(session, user, pin, policy, now, request_id)


def _check_locked_user(
    session: Session,
    user: User,
    pin: str,
    policy: PinPolicy,
    now: datetime,
    request_id: str | None,
) -> PinCheck:
    assert user.pin_hash is not None
    if user.pin_locked_until is not None and user.pin_locked_until > now:
        return PinCheck.LOCKED
    if verify_pin(policy.pepper, user.id, pin, user.pin_hash):
        if user.pin_failed_attempts:
            user.pin_failed_attempts = 0
        return PinCheck.OK
    user.pin_failed_attempts += 1
    locked = user.pin_failed_attempts >= policy.max_attempts
    if locked:
        user.pin_locked_until = now + policy.lock_for
        user.pin_failed_attempts = 0
    audit.record(
        session,
        action="pin.locked" if locked else "pin.failed",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        request_id=request_id,
    )
    return PinCheck.LOCKED if locked else PinCheck.WRONG
