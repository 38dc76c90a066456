"""Logging in: password, login lockout, trusted devices and the OTP second step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import InvalidOtp, RateLimited, Unauthorized
from core.identity import devices, lockout, otp
from core.identity.lockout import LoginPolicy
from core.identity.otp import OtpPolicy, OtpVerdict
from core.identity.passwords import verify_password
from core.identity.users import normalize_email
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
    client_address: str,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None = None,
) -> LoginResult:
    """Check the credentials and keep the login lockout (audited either way).

    Unknown email and wrong password take about the same time, give the same answer and
    lock the same way. A locked email is refused without looking at the password; a device
    the user trusts is refused only by its own address's lock, so an email-wide lock made
    by others does not keep the owner out. The failure counters are reset only once a login
    is complete: a right password that still needs an OTP code does not wipe earlier
    failures (or OTP guessing would never lock). Returns instead of raising so the caller
    commits the counters and the audit row.
    """
    normalized = normalize_email(email)
    throttles = lockout.throttles_for_update(session, normalized, client_address)
    user = session.scalar(select(User).where(User.email == normalized))
    trusted = user is not None and devices.is_trusted(session, user_id=user.id, device_id=device_id)
    locked_for = throttles.seconds_locked(now, trusted_device=trusted)
    if locked_for is not None:
        _audit(session, "auth.login_locked_out", user, actor=None, request_id=request_id)
        return LoginResult(None, locked_for)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.status == UserStatus.SUSPENDED:
        locked = throttles.record_failure(policy, now)
        _audit(session, "auth.login_failed", user, actor=None, request_id=request_id, details=_locked(locked, policy))
        return LoginResult(None)
    if user.otp_enabled and not devices.seen_trusted(session, user_id=user.id, device_id=device_id, now=now):
        _audit(session, "auth.login_needs_otp", user, actor=None, request_id=request_id)
        return LoginResult(user, otp_required=True)
    throttles.record_success()
    _audit(session, "auth.login_succeeded", user, actor=user, request_id=request_id,
           details={"trusted_device": True} if trusted else None)  # fmt: skip
    return LoginResult(user)


@dataclass(frozen=True)
class OtpResult:
    """The user whose code was right, or why not: a wrong/ended challenge or a locked email."""

    user: User | None
    locked_for: int | None = None

    def raise_if_failed(self) -> User:
        if self.locked_for is not None:
            raise RateLimited("too many failed logins; try again later", retry_after=self.locked_for)
        if self.user is None:
            raise InvalidOtp("the code is wrong, or the challenge has expired or ended")
        return self.user


def answer_otp(
    session: Session,
    redis: Redis,
    otp_policy: OtpPolicy,
    *,
    challenge_id: str,
    code: str,
    trust_device: bool,
    client_address: str,
    policy: LoginPolicy,
    now: datetime,
    request_id: str | None = None,
) -> OtpResult:
    """Check an OTP answer under the login lockout of the challenge's user (audited either way).

    The email's lockout rows are locked *before* the code is compared in Redis and the
    failure is counted before they are released: parallel answers queue, each sees the
    count of the one before, and a locked email has no code compared at all. So the wrong
    codes tried across all of an email's challenges are bounded by the lockout, and a right
    code never unlocks (it is not even looked at while locked).
    """
    peeked = otp.peek(redis, challenge_id)
    user = session.get(User, peeked.user_id) if peeked else None
    details: dict[str, Any] = {"challenge_id": challenge_id}
    if user is None:
        _audit(session, "auth.otp_failed", None, actor=None, request_id=request_id,
               details={**details, "challenge_ended": True})  # fmt: skip
        return OtpResult(None)
    throttles = lockout.throttles_for_update(session, user.email, client_address)
    locked_for = throttles.seconds_locked(now)
    if locked_for is not None:
        _audit(session, "auth.otp_locked_out", user, actor=None, request_id=request_id, details=details)
        return OtpResult(None, locked_for)
    verdict, challenge = otp.verify(redis, otp_policy, challenge_id=challenge_id, code=code)
    ok = (
        verdict is OtpVerdict.OK
        and challenge is not None
        and challenge.user_id == user.id
        and user.status != UserStatus.SUSPENDED
    )
    if not ok:
        details.update(_locked(throttles.record_failure(policy, now), policy))
        if verdict is OtpVerdict.ENDED:
            details["challenge_ended"] = True
        _audit(session, "auth.otp_failed", user, actor=None, request_id=request_id, details=details)
        return OtpResult(None)
    throttles.record_success()
    _audit(session, "auth.otp_verified", user, actor=user, request_id=request_id, details=details)
    if trust_device and challenge is not None and challenge.device_id:
        devices.trust(session, user_id=user.id, device_id=challenge.device_id, now=now, request_id=request_id)
    return OtpResult(user)


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
