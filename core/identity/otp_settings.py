"""Turning OTP on and off for a user (off needs the password)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import (
    ValidationFailed,
)
from core.identity.lockout import LoginPolicy
from core.identity.password_change import PasswordCheck, confirm_password
from core.models import User


def set_otp(
    session: Session,
    *,
    user_id: uuid.UUID,
    enabled: bool,
    password: str | None,
    client_address: str,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None = None,
) -> tuple[User, PasswordCheck]:
    """Turn OTP on or off: when on, logins from untrusted devices need a one-time code.

    Turning it off needs the password (checked under the login lockout): a stolen access
    token alone must not remove the second factor. Returns the outcome so the caller commits it.
    """
    user = session.get_one(User, user_id, with_for_update=ROW_LOCK)
    if user.otp_enabled == enabled:
        return user, PasswordCheck(True)
    if not enabled:
        if password is None:
            raise ValidationFailed(
                "password is required to turn OTP off", errors={"password": ["Required to turn OTP off."]}
            )
        check = confirm_password(session, user, password, client_address, policy, now, request_id,
                                  failed="otp.disable_failed")  # fmt: skip
        if not check.ok:
            return user, check
    user.otp_enabled = enabled
    audit.record(
        session,
        action="otp.enabled" if enabled else "otp.disabled",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        request_id=request_id,
    )
    return user, PasswordCheck(True)
