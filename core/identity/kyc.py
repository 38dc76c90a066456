"""KYC decisions and the transitions they make on the user and their accounts."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core import audit
from core.accounts import row_locks
from core.db import ROW_LOCK
from core.errors import (
    NotFound,
)
from core.models import Account, AccountStatus, KycStatus, Role, User, UserStatus


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
    ids = [a.id for a in user.accounts if a.status == AccountStatus.ACTIVE]
    frozen = session.scalars(row_locks.locking(Account, ids=ids)).all()
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
