"""Reading transfers and ledger entries back, always through the caller's ownership.

Every list is answered from an index in the list's own order (created_at, id descending), so its
first page costs the same at 10 million transfers as at 100 thousand (README "Performance"):
  - every transfer (admin): ix_transfers_created_id; with ``status``: ix_transfers_status_created.
  - one owner's, or one account's: an account's transfers are two index ranges, where it is the
    source and where it is the destination (ix_transfers_{source,destination}_status_created).
    Each range yields at most one page, newest first, and the ranges are merged. A filter over
    ``source OR destination`` instead walks the whole created_at index to find one owner's rows.
    The ranges are read with bitmap and sequential scans off (``_ranges_in_order``): the planner
    sizes a range by the average account (a few rows), where reading it all and sorting it costs
    about as much as reading it in order, so with other statistics, or with a heap not yet vacuumed,
    it read a heavy account's whole history and sorted it for each page (about 10,000 rows for a
    page of 50 in the 100k bench book, issue 28).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import String, column, literal, or_, select, text, true, tuple_, union, values
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Account, LedgerEntry, Role, Transfer, TransferStatus, User
from core.pagination import Page, decode_cursor, newest_first, paginate

_KEYS = newest_first(Transfer)


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
    metadata: dict[str, str] | None = None,
) -> Page[Transfer]:
    """The transfers ``user`` may see, newest first: those of their own accounts (``account_id``:
    of that one of them; another's account lists nothing); an admin sees every transfer, as
    ``get_visible`` lets them read any one, or those of ``account_id``."""
    if metadata:
        return _with_metadata(session, user, metadata, status=status, account_id=account_id, cursor=cursor, limit=limit)
    if user.role == Role.ADMIN and account_id is None:
        stmt = select(Transfer)
        if status is not None:
            stmt = stmt.where(Transfer.status == status)
        return paginate(session, stmt, _KEYS, cursor, limit)
    accounts = select(Account.id)
    if user.role != Role.ADMIN:
        accounts = accounts.where(Account.user_id == user.id)
    if account_id is not None:
        accounts = accounts.where(Account.id == account_id)
    newest = _newest_of_accounts(accounts, status, cursor, limit + 1)
    with _ranges_in_order(session):
        return paginate(session, select(Transfer).where(Transfer.id.in_(newest)), _KEYS, cursor, limit)


@contextmanager
def _ranges_in_order(session: Session) -> Iterator[None]:
    """Plan the statements of the block with bitmap and sequential scans off, then put the two
    settings back (the transaction's, as they were). A range is one account, side and status; the
    planner cannot know which account (a LATERAL parameter), so it sizes every range as the average
    account's few rows, and for a few rows a bitmap scan of the whole range and a sort cost about
    what its ordered index scan costs: which one wins turns on the statistics and on how much of the
    heap is marked all-visible. The ordered scan stops after one page whatever the account's size;
    with these two off it is the only cheap plan (each range is still an index range, so nothing
    else is lost). The same planner settings as a hint would give, scoped to this one query."""
    before = session.execute(
        text(
            "SELECT current_setting('enable_bitmapscan'), current_setting('enable_seqscan'),"
            " set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)"
        )
    ).one()
    yield
    # Not on an error: the transaction is then rolled back, and the settings with it.
    session.execute(
        text("SELECT set_config('enable_bitmapscan', :bitmap, true), set_config('enable_seqscan', :seq, true)"),
        {"bitmap": before[0], "seq": before[1]},
    )


def _with_metadata(
    session: Session,
    user: User,
    metadata: dict[str, str],
    *,
    status: TransferStatus | None,
    account_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> Page[Transfer]:
    """Transfers whose metadata holds every pair of ``metadata`` (``@>``: the GIN index
    ix_transfers_metadata finds them), then the same visibility as the other lists."""
    stmt = select(Transfer).where(Transfer.metadata_.contains(metadata), Transfer.metadata_.is_not(None))
    if status is not None:
        stmt = stmt.where(Transfer.status == status)
    if user.role != Role.ADMIN or account_id is not None:
        accounts = select(Account.id)
        if user.role != Role.ADMIN:
            accounts = accounts.where(Account.user_id == user.id)
        if account_id is not None:
            accounts = accounts.where(Account.id == account_id)
        stmt = stmt.where(or_(Transfer.source_account_id.in_(accounts), Transfer.destination_account_id.in_(accounts)))
    return paginate(session, stmt, _KEYS, cursor, limit)


def _newest_of_accounts(accounts: Any, status: TransferStatus | None, cursor: str | None, n: int) -> Any:
    """The ids of the ``n`` newest transfers (after ``cursor``) from or to any of ``accounts``: for
    each account, side and status one index range of at most ``n`` rows, merged. The status is
    part of each range (the indexes lead with account and status), so a status filter reads no
    row of another status, and a list of every status merges one range per status."""
    owned = accounts.subquery("owned")
    # MATERIALIZED: a single status must stay a value read from the list, not a constant folded
    # into each range, or a partial index on that status (the sweeper's PENDING by created_at)
    # becomes a candidate: one walk of every PENDING transfer, filtered by account, which the
    # planner picked in a full test run's statistics (issue 28: plans not left to statistics).
    statuses = (
        select(
            values(column("status", String), name="listed").data(
                [(s.value,) for s in ([status] if status is not None else TransferStatus)]
            )
        )
        .cte("statuses")
        .prefix_with("MATERIALIZED")
    )
    after = decode_cursor(cursor, _KEYS) if cursor else None
    sides = []
    for side in (Transfer.source_account_id, Transfer.destination_account_id):
        one_range = select(Transfer.created_at, Transfer.id).where(
            side == owned.c.id, Transfer.status == statuses.c.status
        )
        if after is not None:
            one_range = one_range.where(
                tuple_(*_KEYS) < tuple_(*(literal(v, k.type) for k, v in zip(_KEYS, after, strict=True)))
            )
        ranged = one_range.order_by(*(k.desc() for k in _KEYS)).limit(n).lateral()
        sides.append(
            select(ranged.c.created_at, ranged.c.id).select_from(owned).join(statuses, true()).join(ranged, true())
        )
    # UNION, not UNION ALL: a transfer between two of the owner's accounts is in both sides.
    merged = union(*sides).subquery("merged")
    return select(merged.c.id).order_by(merged.c.created_at.desc(), merged.c.id.desc()).limit(n)


def list_entries(session: Session, account: Account, *, cursor: str | None, limit: int) -> Page[LedgerEntry]:
    """Newest first in the order the entries were applied, so each one's balance_after minus its
    amount is the next one's balance_after."""
    stmt = select(LedgerEntry).where(LedgerEntry.account_id == account.id)
    return paginate(session, stmt, (LedgerEntry.seq,), cursor, limit)
