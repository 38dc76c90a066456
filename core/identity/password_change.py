"""Changing a password, and confirming one before a security setting changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import (
    Forbidden,
    RateLimited,
    ValidationFailed,
)
from core.identity import lockout
from core.identity.lockout import LoginPolicy
from core.identity.passwords import hash_password, verify_password
from core.identity.users import MIN_PASSWORD_LENGTH
from core.models import User


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    locked_for: int | None = None

    def raise_if_failed(self) -> None:
        if self.locked_for is not None:
            raise RateLimited("too many failed password checks; try again later", retry_after=self.locked_for)
        if not self.ok:
            raise Forbidden("current password is incorrect")


def change_password(
    session: Session,
    *,
    user_id: uuid.UUID,
    current_password: str,
    new_password: str,
    client_address: str,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None = None,
) -> PasswordCheck:
    """Change the password and revoke every token of the user (``token_generation`` + 1).

    A wrong current password counts toward the login lockout: a stolen access token must
    not become a way to guess the password. Returns the outcome so the caller commits it.
    """
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            "password too short", errors={"new_password": [f"Must be at least {MIN_PASSWORD_LENGTH} characters."]}
        )
    user = session.get_one(User, user_id, with_for_update=ROW_LOCK)
    check = confirm_password(
        session, user, current_password, client_address, policy, now, request_id, failed="password.change_failed"
    )
    if not check.ok:
        return check
    user.password_hash = hash_password(new_password)
    user.token_generation += 1
    audit.record(
        session,
        action="password.changed",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        request_id=request_id,
        details={"tokens_revoked": True},
    )
    return PasswordCheck(True)


def confirm_password(
    session: Session,
    user: User,
    password: str,
    client_address: str,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None,
    *,
    failed: str,
) -> PasswordCheck:
    """Re-check the signed-in user's password under the login lockout (a wrong one counts)."""
    throttles = lockout.throttles_for_update(session, user.email, client_address)
    locked_for = throttles.seconds_locked(now)
    if locked_for is not None:
        return PasswordCheck(False, locked_for)
    if verify_password(user.password_hash, password):
        return PasswordCheck(True)
    locked = throttles.record_failure(policy, now)
    audit.record(
        session,
        action=failed,
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        request_id=request_id,
        details={"locked_minutes": int(policy.lock_for.total_seconds() // 60)} if locked else {},
    )
    return PasswordCheck(False)
