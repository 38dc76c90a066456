"""Account services: lookups with owner checks, opening, freezing, settlement accounts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.db import ROW_LOCK
from core.errors import Conflict, NotFound
from core.models import Account, AccountKind, AccountStatus, KycStatus, Role, User
from core.money import validate_currency


def get_owned(session: Session, account_id: uuid.UUID, user: User) -> Account:
    """The account if ``user`` owns it; 404 otherwise, so its existence is not revealed."""
    account = session.get(Account, account_id)
    if account is None or account.user_id != user.id:
        raise NotFound("account not found")
    return account


def get_readable(session: Session, account_id: uuid.UUID, user: User) -> Account:
    """A customer account its owner or an admin may read (limits, balances as of an instant);
    anyone else gets a 404, so its existence is not revealed."""
    account = session.get(Account, account_id)
    if account is None or account.kind != AccountKind.CUSTOMER:
        raise NotFound("account not found")
    if user.role != Role.ADMIN and account.user_id != user.id:
        raise NotFound("account not found")
    return account


def list_owned(session: Session, user: User) -> Sequence[Account]:
    return session.scalars(
        select(Account).where(Account.user_id == user.id).order_by(Account.created_at, Account.id)
    ).all()


def open_account(
    session: Session, user: User, currency: str, request_id: str | None, *, max_accounts: int | None = None
) -> Account:
    """Open an account (ACTIVE once KYC is approved). ``max_accounts``: a cap on the user's open
    (not CLOSED) accounts, so one customer cannot fill the table; over it is a 409."""
    validate_currency(currency)
    if max_accounts is not None:
        # The user's row lock serialises concurrent openings: the count cannot be raced past the cap.
        session.get_one(User, user.id, with_for_update=ROW_LOCK)
        held = session.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.user_id == user.id, Account.status != AccountStatus.CLOSED)
        )
        if (held or 0) >= max_accounts:
            raise Conflict(f"account limit reached: at most {max_accounts} open accounts per user")
    status = AccountStatus.ACTIVE if user.kyc_status == KycStatus.APPROVED else AccountStatus.INACTIVE
    account = Account(user_id=user.id, currency=currency, status=status)
    session.add(account)
    session.flush()  # id for the audit row
    audit.record(
        session,
        action="account.opened",
        entity_type="account",
        entity_id=account.id,
        actor_id=user.id,
        request_id=request_id,
        details={"currency": currency},
    )
    return account


def set_frozen(
    session: Session,
    account_id: uuid.UUID,
    *,
    frozen: bool,
    admin_id: uuid.UUID,
    reason: str,
    request_id: str | None,
) -> Account:
    account = session.get(Account, account_id, with_for_update=ROW_LOCK)
    if account is None or account.kind != AccountKind.CUSTOMER:
        raise NotFound("account not found")
    if frozen:
        if account.status != AccountStatus.ACTIVE:
            raise Conflict(f"only an ACTIVE account can be frozen (it is {account.status})")
        account.status = AccountStatus.FROZEN
    else:
        if account.status != AccountStatus.FROZEN:
            raise Conflict(f"account is not frozen (it is {account.status})")
        account.status = AccountStatus.ACTIVE
    audit.record(
        session,
        action="account.frozen" if frozen else "account.unfrozen",
        entity_type="account",
        entity_id=account.id,
        actor_id=admin_id,
        request_id=request_id,
        details={"reason": reason},
    )
    return account


def settlement_account_id(session: Session, currency: str) -> uuid.UUID:
    """The bank's settlement account for ``currency``, created on first use (race-safe)."""
    return _bank_account_id(session, AccountKind.SETTLEMENT, currency)


def in_transit_account_id(session: Session, currency: str) -> uuid.UUID:
    """The bank's in-transit account for ``currency`` (payouts accepted, not yet settled by the
    correspondent bank), created on first use (race-safe)."""
    return _bank_account_id(session, AccountKind.IN_TRANSIT, currency)


def _bank_account_id(session: Session, kind: AccountKind, currency: str) -> uuid.UUID:
    session.execute(
        insert(Account)
        .values(
            id=uuid.uuid4(),
            user_id=None,
            kind=kind,
            currency=currency,
            status=AccountStatus.ACTIVE,
            balance=0,
        )
        # A literal predicate: bound as a parameter, a prepared statement (psycopg prepares after
        # 5 runs on a connection) cannot infer the partial unique index and fails. One partial
        # unique index per kind (uq_accounts_settlement_currency, uq_accounts_in_transit_currency).
        .on_conflict_do_nothing(index_elements=["currency"], index_where=text(f"kind = '{kind.value}'"))
    )
    return session.execute(select(Account.id).where(Account.kind == kind, Account.currency == currency)).scalar_one()
