"""Double-entry posting (every movement is a debit and a credit that sum to zero), and where an
instant cuts an account's entries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
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


# ---- where an instant cuts an account's ledger -------------------------------------------------
#
# An account's entries are ordered by ``seq``, the order they were applied in (balance_after chains
# along it). Their ``created_at`` is their transaction's start, which is not monotonic in seq: a
# settlement that waited for the account's lock may have started before the one that held it. So
# an instant cannot cut the entries by created_at without breaking the chain; it cuts them at a
# seq: the first entry, in apply order, whose created_at is at or after the instant. Everything
# applied before that entry is "before the instant", that entry and everything after it is not.
# The cut only moves forward as the instant does (the set of entries at or after a later instant
# is a subset), so the periods [a, b) and [b, c) join exactly, and a balance read "at" an instant
# is the balance_after of an entry.


def cut(session: Session, account_id: uuid.UUID, instant: datetime) -> int | None:
    """The seq of the first entry, in apply order, created at or after ``instant``; None if none is
    (yet): then every entry of the account is before the instant."""
    return session.scalar(
        select(func.min(LedgerEntry.seq)).where(LedgerEntry.account_id == account_id, LedgerEntry.created_at >= instant)
    )


def balance_before(session: Session, account_id: uuid.UUID, seq: int | None) -> int:
    """The account's balance just before the entry ``seq`` was applied (``None``: after its last
    entry): the balance_after of the entry before it, one probe of (account_id, seq); 0 if none."""
    stmt = select(LedgerEntry.balance_after).where(LedgerEntry.account_id == account_id)
    if seq is not None:
        stmt = stmt.where(LedgerEntry.seq < seq)
    return session.scalar(stmt.order_by(LedgerEntry.seq.desc()).limit(1)) or 0


def balance_at(session: Session, account_id: uuid.UUID, instant: datetime) -> int:
    """The balance after every entry applied before the ledger's cut at ``instant`` (for "at or
    before ``as_of``" pass the next representable instant, ``as_of`` + 1 µs)."""
    return balance_before(session, account_id, cut(session, account_id, instant))
