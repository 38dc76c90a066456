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
    (yet): then every entry of the account is before the instant.

    There are two exact ways to find it: walk the entries in apply order from the first (the first
    one created at or after the instant is the cut; it costs the entries before the cut), or take
    the smallest seq of the entries created at or after the instant (it costs those). A plain
    ``min(seq) ... WHERE created_at >= instant`` lets the planner pick blindly, and it walks for a
    recent instant (expecting a match early), reading a busy account's whole history for this
    month's statement. So: a short walk answers an instant at or before the account's first
    entries (a whole history); otherwise the entries since the instant are read, few for the
    statements asked most (recent periods)."""
    mine = LedgerEntry.account_id == account_id
    head = select(LedgerEntry.seq, LedgerEntry.created_at).where(mine).order_by(LedgerEntry.seq).limit(_WALK)
    w = head.subquery()
    hit, n = session.execute(select(func.min(w.c.seq).filter(w.c.created_at >= instant), func.count())).one()
    if hit is not None or n < _WALK:
        return None if hit is None else int(hit)
    # "seq + 0": the minimum of an expression, which the planner cannot answer by walking the
    # (account_id, seq) index; it reads the entries since the instant by (account_id, created_at).
    since = session.scalar(select(func.min(LedgerEntry.seq + 0)).where(mine, LedgerEntry.created_at >= instant))
    return None if since is None else int(since)


# Entries a cut first walks in apply order: a whole history's cut is among them.
_WALK = 512

# Not bounded yet (issue 28): an old instant on a heavy account reads every entry since it. No
# exact bounded read exists over what an entry stores today: created_at is not monotonic in seq,
# and nothing bounds by how much (a transaction may wait for the account's lock for as long as it
# is open), so no search over seq can prove that no entry before its answer was created at or
# after the instant without reading those entries; and the (account_id, created_at) index gives
# the entries since the instant, not the smallest seq among them, without reading them all.
# What would make it exact and bounded: each entry storing the running maximum of created_at
# along its account's seq (``created_max = greatest(created_at, previous entry's created_max)``,
# set by a BEFORE INSERT trigger, which runs under the account's row lock every poster holds, so
# the previous entry is committed and visible). That column is monotonic in seq, and the first
# entry with ``created_max >= instant`` is exactly the cut (an entry has created_max >= instant
# iff it or one before it was created at or after the instant). It is then one probe of an
# index on (account_id, created_max, seq), or ~log2(seq range) probes of the existing
# (account_id, seq) index by bisection. Its price: 8 bytes per entry (16 per transfer; with
# the index ~60 more), one index probe per posted entry on the settlement path, a backfill by
# window function (max(created_at) OVER (PARTITION BY account_id ORDER BY seq)) in the
# migration, and bench.scale's loader writing it. Left for a measured change of its own.


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
