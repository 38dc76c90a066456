"""Double-entry posting: every movement is a debit and a credit that sum to zero."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import Account, LedgerEntry, Transfer


def post(session: Session, transfer: Transfer, debit: Account, credit: Account, amount: int | None = None) -> None:
    """Move ``amount`` (default ``transfer.amount``; a partial capture moves less) from ``debit``
    to ``credit`` and write both entries.

    The caller holds both account rows ``FOR NO KEY UPDATE``, so this read-modify-write cannot
    lose an update; the CHECK on customer balances and the unique (transfer, account)
    entry are the last guards if a caller ever forgets.
    """
    amount = transfer.amount if amount is None else amount
    debit.balance -= amount
    credit.balance += amount
    session.add_all(
        [
            LedgerEntry(transfer_id=transfer.id, account_id=debit.id, amount=-amount, balance_after=debit.balance),
            LedgerEntry(transfer_id=transfer.id, account_id=credit.id, amount=amount, balance_after=credit.balance),
        ]
    )
