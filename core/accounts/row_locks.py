"""The one order in which accounts are locked: by id, ascending.

Every writer that locks more than one account (settlement, hold endings and the expiry sweep,
deposits, a KYC revocation's freezes, and the Redis leases of core/locks.py) takes them in this
order, so two writers that need crossing accounts wait on each other instead of deadlocking.
The row lock is FOR NO KEY UPDATE (core.db.ROW_LOCK): foreign keys to the account (ledger
entries, transfers) take KEY SHARE, which it does not block.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Select, Table, select

from core.db import ROW_LOCK
from core.models import Account

_A = cast(Table, Account.__table__)


def in_lock_order(account_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """The accounts, each once, in the order they are locked."""
    return sorted(set(account_ids))


def locking(*columns: Any, ids: Iterable[uuid.UUID]) -> Select[Any]:
    """``SELECT columns FROM accounts WHERE id IN ids``, locking the rows in lock order; pass
    ``Account`` for entities (re-read from the locked rows) or the table's columns for rows.
    Other tables may appear in ``columns`` as subqueries: only accounts' rows are locked."""
    return (
        select(*columns)
        .where(_A.c.id.in_(in_lock_order(ids)))
        .order_by(_A.c.id)
        .with_for_update(**ROW_LOCK, of=_A)
        .execution_options(populate_existing=True)
    )
