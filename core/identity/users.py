"""Customers and their listing: registration (user + first account) and the admin's view of users."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.errors import (
    Conflict,
    ValidationFailed,
)
from core.identity.passwords import hash_password
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


def list_users(session: Session, *, kyc_status: KycStatus | None, cursor: str | None, limit: int) -> Page[User]:
    stmt = select(User)
    if kyc_status is not None:
        stmt = stmt.where(User.kyc_status == kyc_status)
    return paginate(session, stmt, newest_first(User), cursor, limit)
