"""Reading transfers and ledger entries back, always through the caller's ownership."""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Account, LedgerEntry, Role, Transfer, TransferStatus, User
from core.pagination import Page, newest_first, paginate


def get_visible(session: Session, transfer_id: uuid.UUID, user: User) -> Transfer:
    """A transfer the user may see: they own its source or destination, or they are an admin."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise NotFound("transfer not found")
    if user.role == Role.ADMIN:
        return transfer
    owners = set(
        session.scalars(
            select(Account.user_id).where(Account.id.in_([transfer.source_account_id, transfer.destination_account_id]))
        )
    )
    if user.id not in owners:
        raise NotFound("transfer not found")
    return transfer


def list_visible(
    session: Session,
    user: User,
    *,
    status: TransferStatus | None,
    account_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> Page[Transfer]:
    """The transfers ``user`` may see, newest first: those of their own accounts; an admin sees
    every transfer, as ``get_visible`` lets them read any one."""
    stmt = select(Transfer)
    if user.role != Role.ADMIN:
        own_accounts = select(Account.id).where(Account.user_id == user.id)
        stmt = stmt.where(
            or_(
                Transfer.source_account_id.in_(own_accounts),
                Transfer.destination_account_id.in_(own_accounts),
            )
        )
    if status is not None:
        stmt = stmt.where(Transfer.status == status)
    if account_id is not None:
        stmt = stmt.where(or_(Transfer.source_account_id == account_id, Transfer.destination_account_id == account_id))
    return paginate(session, stmt, newest_first(Transfer), cursor, limit)


def list_entries(session: Session, account: Account, *, cursor: str | None, limit: int) -> Page[LedgerEntry]:
    """Newest first in the order the entries were applied, so each one's balance_after minus its
    amount is the next one's balance_after."""
    stmt = select(LedgerEntry).where(LedgerEntry.account_id == account.id)
    return paginate(session, stmt, (LedgerEntry.seq,), cursor, limit)
