"""Administrators and the admin's own actions on a login: creating an admin, unlocking an email."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.identity import lockout
from core.identity.passwords import hash_password
from core.identity.users import normalize_email
from core.models import KycStatus, Role, User, UserStatus


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
