"""Login lockout: too many failed logins for an email refuse it for a while, even with the right password.

The counter lives in Postgres (``login_throttles``), so it holds across API processes and
restarts. Rows are keyed by a digest of the normalised email, so unknown emails lock too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.db import ROW_LOCK
from core.identity.models import LoginThrottle


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int
    lock_for: timedelta  # also the window in which failures add up


def email_digest(normalized_email: str) -> str:
    return hashlib.sha256(normalized_email.encode()).hexdigest()


def throttle_for_update(session: Session, normalized_email: str) -> LoginThrottle:
    """The email's row, created if missing and locked: concurrent guesses queue behind each other."""
    digest = email_digest(normalized_email)
    session.execute(insert(LoginThrottle).values(email_digest=digest).on_conflict_do_nothing())
    return session.get_one(LoginThrottle, digest, with_for_update=ROW_LOCK, populate_existing=True)


def seconds_locked(throttle: LoginThrottle, now: datetime) -> int | None:
    """Seconds until the lock ends, or None when the email is not locked."""
    if throttle.locked_until is None or throttle.locked_until <= now:
        return None
    return max(1, math.ceil((throttle.locked_until - now).total_seconds()))


def record_failure(throttle: LoginThrottle, policy: LoginPolicy, now: datetime) -> bool:
    """Count one failed login; True when this failure locks the email."""
    if throttle.first_failed_at is None or now - throttle.first_failed_at > policy.lock_for:
        throttle.failed_attempts = 0  # earlier failures fell out of the window
        throttle.first_failed_at = now
    throttle.failed_attempts += 1
    if throttle.failed_attempts < policy.max_failures:
        return False
    throttle.locked_until = now + policy.lock_for
    throttle.failed_attempts = 0
    throttle.first_failed_at = None
    return True


def record_success(throttle: LoginThrottle) -> None:
    if throttle.failed_attempts or throttle.first_failed_at or throttle.locked_until:
        throttle.failed_attempts = 0
        throttle.first_failed_at = None
        throttle.locked_until = None
