"""Login lockout: too many failed logins refuse an email for a while, even with the right password.

Two counters per email, both in Postgres (``login_throttles``) so they hold across API
processes and restarts, keyed by digests so unknown emails lock exactly like real ones:

- per (email, client address): ``max_failures`` in the window lock that address out. One
  attacker's guesses lock the attacker, not the owner logging in from elsewhere.
- email-wide: ``email_max_failures`` (set higher) from all addresses together lock the
  email. This bounds a guesser spread over many addresses; the owner still gets in from a
  trusted device, and an admin can clear it (``flask --app web unlock-user``).

Wrong passwords, wrong OTP codes and wrong current passwords all count; a lock is never
cleared by a success (only by time or by an admin), so a right answer never unlocks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.db import ROW_LOCK
from core.identity.models import LoginThrottle


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int  # per (email, client address)
    lock_for: timedelta  # also the window in which failures add up
    email_max_failures: int = 50  # per email, from every address together


def email_digest(normalized_email: str) -> str:
    return hashlib.sha256(normalized_email.encode()).hexdigest()


def address_key(normalized_email: str, client_address: str) -> str:
    return hashlib.sha256(f"login-address:v1:{client_address}\x00{normalized_email}".encode()).hexdigest()


@dataclass(frozen=True)
class Throttles:
    """The two counters one login attempt touches, both row-locked."""

    address: LoginThrottle
    email: LoginThrottle

    def seconds_locked(self, now: datetime, *, trusted_device: bool = False) -> int | None:
        """Seconds until the attempt may be answered, or None. A trusted device skips the email-wide lock."""
        waits = [seconds_locked(self.address, now)]
        if not trusted_device:
            waits.append(seconds_locked(self.email, now))
        return max((w for w in waits if w is not None), default=None)

    def record_failure(self, policy: LoginPolicy, now: datetime) -> bool:
        """Count one failure on both; True when it locks either."""
        by_address = _count(self.address, policy.max_failures, policy.lock_for, now)
        by_email = _count(self.email, policy.email_max_failures, policy.lock_for, now)
        return by_address or by_email

    def record_success(self) -> None:
        record_success(self.address)
        record_success(self.email)


def throttles_for_update(session: Session, normalized_email: str, client_address: str) -> Throttles:
    """The email's two rows, created if missing and locked (in key order, so two attempts never
    deadlock): concurrent guesses queue behind each other and each sees the last one's count."""
    digest = email_digest(normalized_email)
    keys = {"email": digest, "address": address_key(normalized_email, client_address)}
    session.execute(
        insert(LoginThrottle)
        .values([{"throttle_key": k, "email_digest": digest} for k in sorted(keys.values())])
        .on_conflict_do_nothing()
    )
    rows = session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.throttle_key.in_(keys.values()))
        .order_by(LoginThrottle.throttle_key)
        .with_for_update(**ROW_LOCK)
        .execution_options(populate_existing=True)
    ).all()
    by_key = {row.throttle_key: row for row in rows}
    return Throttles(address=by_key[keys["address"]], email=by_key[keys["email"]])


def unlock(session: Session, normalized_email: str) -> int:
    """Forget every counter and lock of an email (admin action; the caller audits it). Rows cleared."""
    cleared = session.scalars(
        delete(LoginThrottle)
        .where(LoginThrottle.email_digest == email_digest(normalized_email))
        .returning(LoginThrottle.throttle_key)
    ).all()
    return len(cleared)


def seconds_locked(throttle: LoginThrottle, now: datetime) -> int | None:
    """Seconds until the lock ends, or None when the row is not locked."""
    if throttle.locked_until is None or throttle.locked_until <= now:
        return None
    return max(1, math.ceil((throttle.locked_until - now).total_seconds()))


def record_failure(throttle: LoginThrottle, policy: LoginPolicy, now: datetime) -> bool:
    """Count one failure on a single row against ``policy.max_failures``; True when it locks."""
    return _count(throttle, policy.max_failures, policy.lock_for, now)


def _count(throttle: LoginThrottle, limit: int, lock_for: timedelta, now: datetime) -> bool:
    if throttle.first_failed_at is None or now - throttle.first_failed_at > lock_for:
        throttle.failed_attempts = 0  # earlier failures fell out of the window
        throttle.first_failed_at = now
    throttle.failed_attempts += 1
    if throttle.failed_attempts < limit:
        return False
    throttle.locked_until = now + lock_for
    throttle.failed_attempts = 0
    throttle.first_failed_at = None
    return True


def record_success(throttle: LoginThrottle) -> None:
    """Reset the failure count. A running lock stays: only time or an admin ends it."""
    if throttle.failed_attempts or throttle.first_failed_at:
        throttle.failed_attempts = 0
        throttle.first_failed_at = None
