"""Logging in: password, login lockout, trusted devices and the OTP second step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import RateLimited, Unauthorized
from core.identity import devices, lockout
from core.identity.lockout import LoginPolicy
from core.identity.otp import Challenge, OtpVerdict
from core.identity.passwords import verify_password
from core.identity.service import normalize_email
from core.models import User, UserStatus


@dataclass(frozen=True)
class LoginResult:
    """The authenticated user, or why not: wrong credentials (``user`` None) or a locked email.

    ``otp_required``: the password was right but the device is not trusted; tokens wait for the code.
    """

    user: User | None
    locked_for: int | None = None  # seconds until the lockout ends
    otp_required: bool = False

    def raise_if_failed(self) -> User:
        if self.locked_for is not None:
            raise RateLimited("too many failed logins; try again later", retry_after=self.locked_for)
        if self.user is None:
            raise Unauthorized("invalid email or password")
        return self.user


def authenticate(
    session: Session,
    *,
    email: str,
    password: str,
    device_id: str | None,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None = None,
) -> LoginResult:
    """Check the credentials and keep the login lockout (audited either way).

    Unknown email and wrong password take about the same time, give the same answer and
    lock the same way. A locked email is refused without looking at the password. The
    failure counter is reset only once a login is complete: a right password that still
    needs an OTP code does not wipe earlier failures (or OTP guessing would never lock).
    Returns instead of raising so the caller commits the counter and the audit row.
    """
    normalized = normalize_email(email)
    throttle = lockout.throttle_for_update(session, normalized)
    user = session.scalar(select(User).where(User.email == normalized))
    locked_for = lockout.seconds_locked(throttle, now)
    if locked_for is not None:
        _audit(session, "auth.login_locked_out", user, actor=None, request_id=request_id)
        return LoginResult(None, locked_for)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.status == UserStatus.SUSPENDED:
        locked = lockout.record_failure(throttle, policy, now)
        _audit(session, "auth.login_failed", user, actor=None, request_id=request_id, details=_locked(locked, policy))
        return LoginResult(None)
    if user.otp_enabled and not devices.seen_trusted(session, user_id=user.id, device_id=device_id, now=now):
        _audit(session, "auth.login_needs_otp", user, actor=None, request_id=request_id)
        return LoginResult(user, otp_required=True)
    lockout.record_success(throttle)
    _audit(session, "auth.login_succeeded", user, actor=user, request_id=request_id)
    return LoginResult(user)


def finish_otp(
    session: Session,
    *,
    challenge_id: str,
    challenge: Challenge | None,
    verdict: OtpVerdict,
    trust_device: bool,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None = None,
) -> User | None:
    """Record an OTP answer: the user on success (trusting the device if asked), else None.

    A wrong code counts as a failed login of that user, so OTP guessing runs into the lockout.
    """
    user = session.get(User, challenge.user_id) if challenge else None
    ok = verdict is OtpVerdict.OK and user is not None and user.status != UserStatus.SUSPENDED
    details: dict[str, Any] = {"challenge_id": challenge_id}
    if user is not None:
        throttle = lockout.throttle_for_update(session, user.email)
        if ok:
            lockout.record_success(throttle)
        else:
            details.update(_locked(lockout.record_failure(throttle, policy, now), policy))
    if verdict is OtpVerdict.ENDED:
        details["challenge_ended"] = True
    _audit(session, "auth.otp_verified" if ok else "auth.otp_failed", user, actor=user if ok else None,
           request_id=request_id, details=details)  # fmt: skip
    if not ok or user is None or challenge is None:
        return None
    if trust_device and challenge.device_id:
        devices.trust(session, user_id=user.id, device_id=challenge.device_id, now=now, request_id=request_id)
    return user


def _locked(locked: bool, policy: LoginPolicy) -> dict[str, Any]:
    return {"locked_minutes": int(policy.lock_for.total_seconds() // 60)} if locked else {}


def _audit(
    session: Session,
    action: str,
    user: User | None,
    *,
    actor: User | None,
    request_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        action=action,
        entity_type="user",
        entity_id=user.id if user else None,
        actor_id=actor.id if actor else None,
        request_id=request_id,
        details=details,
    )
