"""Identity services. Each takes the caller's session and never commits."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import (
    Conflict,
    Forbidden,
    InvalidPin,
    NotFound,
    PinLocked,
    PinNotSet,
    RateLimited,
    ValidationFailed,
)
from core.identity import lockout
from core.identity.lockout import LoginPolicy
from core.identity.passwords import hash_password, verify_password
from core.identity.pins import hash_pin, validate_pin, verify_pin
from core.models import Account, AccountStatus, KycStatus, Role, User, UserStatus
from core.money import validate_currency
from core.pagination import Page, newest_first, paginate

MIN_PASSWORD_LENGTH = 12


MAX_EMAIL_LENGTH = 254


def normalize_email(email: str) -> str:
    """Lower-cased, trimmed, and checked for length afterwards: ``lower()`` can lengthen a string
    ("İ" becomes two code points), so a valid-looking input may no longer fit the column."""
    normalized = email.strip().lower()
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise ValidationFailed("email is too long", errors={"email": [f"Longer than {MAX_EMAIL_LENGTH} characters."]})
    return normalized


def register(
    session: Session,
    *,
    email: str,
    password: str,
    full_name: str,
    currency: str = "USD",
    request_id: str | None = None,
) -> tuple[User, Account]:
    """Create an inactive customer awaiting KYC, with one inactive account."""
    email = normalize_email(email)
    validate_currency(currency)
    user_id = uuid.uuid4()
    # ON CONFLICT keeps a concurrent duplicate registration a clean 409, not an IntegrityError.
    inserted = session.execute(
        insert(User)
        .values(
            id=user_id,
            email=email,
            password_hash=hash_password(password),
            full_name=full_name,
            role=Role.CUSTOMER,
            kyc_status=KycStatus.PENDING,
            status=UserStatus.INACTIVE,
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(User.id)
    ).scalar_one_or_none()
    if inserted is None:
        raise Conflict("a user with this email already exists")
    user = session.get_one(User, user_id)
    account = Account(user_id=user.id, currency=currency, status=AccountStatus.INACTIVE)
    session.add(account)
    session.flush()  # ids for the audit row
    audit.record(
        session,
        action="user.registered",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        request_id=request_id,
        details={"account_id": str(account.id), "currency": currency},
    )
    return user, account


def create_admin(session: Session, *, email: str, password: str, full_name: str = "Administrator") -> User:
    """Create (or promote) an admin. Used by the CLI only."""
    email = normalize_email(email)
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, full_name=full_name, password_hash=hash_password(password))
        session.add(user)
    else:
        user.password_hash = hash_password(password)
        user.token_generation += 1  # a password reset revokes the tokens issued before it
        # A reset is how an operator gets back in: a lockout made by someone else must not outlive it.
        lockout.unlock(session, email)
    user.role = Role.ADMIN
    user.kyc_status = KycStatus.APPROVED
    user.status = UserStatus.ACTIVE
    session.flush()
    audit.record(session, action="admin.created", entity_type="user", entity_id=user.id, actor_id=None)
    return user


def unlock_login(session: Session, *, email: str) -> int:
    """Clear every login lock and failure count of an email (admin CLI), audited. Rows cleared."""
    normalized = normalize_email(email)
    cleared = lockout.unlock(session, normalized)
    user = session.scalar(select(User).where(User.email == normalized))
    audit.record(
        session,
        action="auth.login_unlocked",
        entity_type="user",
        entity_id=user.id if user else None,
        actor_id=None,
        details={"email_digest": lockout.email_digest(normalized), "rows_cleared": cleared},
    )
    return cleared


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
    check = _confirm_password(
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


def _confirm_password(
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
        check = _confirm_password(session, user, password, client_address, policy, now, request_id,
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


def decide_kyc(
    session: Session,
    *,
    user_id: uuid.UUID,
    approve: bool,
    admin_id: uuid.UUID,
    reason: str | None = None,
    request_id: str | None = None,
) -> User:
    """Record a KYC decision and apply its transition (README "Security", KYC).

    - APPROVE: the user and their INACTIVE accounts become ACTIVE; a user suspended by an
      earlier rejection is reinstated, but accounts frozen then stay FROZEN until an admin
      unfreezes each one (a freeze may have other reasons).
    - REJECT of a PENDING user: everything stays INACTIVE.
    - REJECT of an APPROVED user (KYC revoked): the user is SUSPENDED (tokens stop working,
      logins fail) and every ACTIVE account is FROZEN, so it neither sends nor receives.
    """
    user = session.get(User, user_id, with_for_update=ROW_LOCK)
    if user is None or user.role != Role.CUSTOMER:
        raise NotFound("user not found")
    details: dict[str, object] = {"reason": reason} if reason else {}
    details["previous_kyc_status"] = user.kyc_status.value
    if approve:
        user.kyc_status = KycStatus.APPROVED
        if user.status in (UserStatus.INACTIVE, UserStatus.SUSPENDED):
            user.status = UserStatus.ACTIVE
        for account in user.accounts:
            if account.status == AccountStatus.INACTIVE:
                account.status = AccountStatus.ACTIVE
    else:
        if user.kyc_status == KycStatus.APPROVED:
            details.update(_revoke_kyc(session, user, admin_id=admin_id, request_id=request_id))
        user.kyc_status = KycStatus.REJECTED
    audit.record(
        session,
        action="kyc.approved" if approve else "kyc.rejected",
        entity_type="user",
        entity_id=user.id,
        actor_id=admin_id,
        request_id=request_id,
        details=details,
    )
    return user


def _revoke_kyc(session: Session, user: User, *, admin_id: uuid.UUID, request_id: str | None) -> dict[str, object]:
    """Suspend the user and freeze their ACTIVE accounts (row-locked, in id order), each audited."""
    user.status = UserStatus.SUSPENDED
    ids = sorted(a.id for a in user.accounts if a.status == AccountStatus.ACTIVE)
    frozen = session.scalars(
        select(Account).where(Account.id.in_(ids)).order_by(Account.id).with_for_update(**ROW_LOCK)
    ).all()
    for account in frozen:
        if account.status == AccountStatus.ACTIVE:
            account.status = AccountStatus.FROZEN
            audit.record(
                session,
                action="account.frozen",
                entity_type="account",
                entity_id=account.id,
                actor_id=admin_id,
                request_id=request_id,
                details={"reason": "kyc.rejected"},
            )
    return {"user_suspended": True, "accounts_frozen": [str(a.id) for a in frozen]}


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


def list_users(session: Session, *, kyc_status: KycStatus | None, cursor: str | None, limit: int) -> Page[User]:
    stmt = select(User)
    if kyc_status is not None:
        stmt = stmt.where(User.kyc_status == kyc_status)
    return paginate(session, stmt, newest_first(User), cursor, limit)
