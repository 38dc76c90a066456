"""Balance monitors: an owner's condition on an account's ``balance`` or ``available_balance``.

A monitor fires ``balance.monitor_triggered`` each time a change takes its field from not
meeting the condition to meeting it: once per crossing, not on every change while it holds.
Every writer of a balance or a held total (settlement, capture, void, expiry, deposits) calls
``balances_changed`` with the values before and after each change, in the transaction that
makes it, so the event is in the outbox exactly when the change commits.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from core import audit, events
from core.accounts import service as accounts
from core.accounts.limits import available
from core.db import ROW_LOCK
from core.errors import NotFound, ValidationFailed
from core.events import EventType
from core.models import Account, BalanceMonitor, User

MAX_PER_ACCOUNT = 20
FIELDS = ("balance", "available_balance")
OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}

_M = cast(Table, BalanceMonitor.__table__)


@dataclass(frozen=True)
class BalanceChange:
    """One change of an account's balance or available balance, and the transfer that made it."""

    account_id: uuid.UUID
    transfer_id: uuid.UUID | None
    balance_before: int
    balance_after: int
    available_before: int
    available_after: int


def values_of(*accounts: Account) -> dict[uuid.UUID, tuple[int, int]]:
    """Each account's (balance, available balance) now: the "before" of ``changes_since``."""
    return {a.id: (a.balance, available(a.balance, a.held_amount, a.credit_limit)) for a in accounts}


def changes_since(
    before: dict[uuid.UUID, tuple[int, int]], accounts: Sequence[Account], transfer_id: uuid.UUID | None
) -> list[BalanceChange]:
    """What changed on ``accounts`` (ORM objects, as modified) since ``values_of``."""
    after = values_of(*accounts)
    return [
        BalanceChange(a, transfer_id, before[a][0], after[a][0], before[a][1], after[a][1])
        for a in after
        if after[a] != before[a]
    ]


def meets(monitor: Any, balance: int, available_balance: int) -> bool:
    value = balance if monitor.field == "balance" else available_balance
    return OPERATORS[monitor.operator](value, monitor.value)


def create(
    session: Session,
    account_id: uuid.UUID,
    user: User,
    *,
    field: str,
    operator: str,
    value: int,
    description: str | None = None,
    request_id: str | None,
) -> BalanceMonitor:
    """A new monitor on the caller's account: at most MAX_PER_ACCOUNT per account (a 422 beyond)."""
    account = accounts.get_owned(session, account_id, user)
    if field not in FIELDS or operator not in OPERATORS:
        raise ValidationFailed(
            "unknown field or operator", errors={"field" if field not in FIELDS else "operator": ["Unknown."]}
        )
    # The owner's row lock (not the account's, which settlement takes) serialises creations: the
    # count cannot be raced past the cap.
    session.get_one(User, user.id, with_for_update=ROW_LOCK)
    count = session.scalar(select(func.count()).select_from(_M).where(_M.c.account_id == account.id)) or 0
    if count >= MAX_PER_ACCOUNT:
        raise ValidationFailed(
            f"at most {MAX_PER_ACCOUNT} monitors per account",
            errors={"_schema": [f"At most {MAX_PER_ACCOUNT} monitors per account."]},
        )
    monitor = BalanceMonitor(
        account_id=account.id, field=field, operator=operator, value=value, description=description
    )
    session.add(monitor)
    session.flush()  # id and created_at for the answer and the audit row
    session.refresh(monitor)
    audit.record(
        session,
        action="account.monitor_created",
        entity_type="account",
        entity_id=account.id,
        actor_id=user.id,
        request_id=request_id,
        details={"monitor_id": str(monitor.id), "field": field, "operator": operator, "value": value},
    )
    return monitor


def list_for(session: Session, account_id: uuid.UUID, user: User) -> Sequence[BalanceMonitor]:
    account = accounts.get_owned(session, account_id, user)
    return session.scalars(
        select(BalanceMonitor)
        .where(BalanceMonitor.account_id == account.id)
        .order_by(BalanceMonitor.created_at, BalanceMonitor.id)
    ).all()


def remove(session: Session, account_id: uuid.UUID, monitor_id: uuid.UUID, user: User, request_id: str | None) -> None:
    account = accounts.get_owned(session, account_id, user)
    deleted = session.execute(
        delete(_M).where(_M.c.id == monitor_id, _M.c.account_id == account.id).returning(_M.c.id)
    ).scalar_one_or_none()
    if deleted is None:
        raise NotFound("monitor not found")
    audit.record(
        session,
        action="account.monitor_deleted",
        entity_type="account",
        entity_id=account.id,
        actor_id=user.id,
        request_id=request_id,
        details={"monitor_id": str(monitor_id)},
    )


def balances_changed(session: Session, changes: Sequence[BalanceChange]) -> None:
    """Fire the monitors these changes (in the order they were made) take across their
    condition: one balance.monitor_triggered event each, to the account's owner, and the
    monitor's last_triggered_at. One query when no touched account has a monitor."""
    if not changes:
        return
    rows = session.execute(
        select(_M, Account.user_id, Account.currency)
        .join(Account, Account.id == _M.c.account_id)
        .where(_M.c.account_id.in_({c.account_id for c in changes}))
        .order_by(_M.c.created_at, _M.c.id)
    ).all()
    if not rows:
        return
    by_account: dict[uuid.UUID, list[Any]] = {}
    for m in rows:
        by_account.setdefault(m.account_id, []).append(m)
    fired = [
        (m, c)
        for c in changes
        for m in by_account.get(c.account_id, ())
        if meets(m, c.balance_after, c.available_after) and not meets(m, c.balance_before, c.available_before)
    ]
    if not fired:
        return
    at = (
        session.execute(
            update(_M)
            .where(_M.c.id.in_({m.id for m, _ in fired}))
            .values(last_triggered_at=func.now())
            .returning(_M.c.last_triggered_at)
        )
        .scalars()
        .first()
    )
    events.emit_many(
        session,
        [
            {
                "id": uuid.uuid4(),
                "event_type": EventType.BALANCE_MONITOR_TRIGGERED,
                "data": _payload(m, c, at),
                "owner_ids": [m.user_id],
            }
            for m, c in fired
        ],
    )


def _payload(m: Any, c: BalanceChange, at: Any) -> dict[str, Any]:
    return {
        "monitor": {
            "id": str(m.id),
            "account_id": str(m.account_id),
            "field": m.field,
            "operator": m.operator,
            "value": m.value,
            "description": m.description,
            "created_at": m.created_at.isoformat(),
            "last_triggered_at": at.isoformat(),
        },
        "account": {
            "id": str(c.account_id),
            "user_id": str(m.user_id),
            "currency": m.currency,
            "balance": c.balance_after,
            "available_balance": c.available_after,
        },
        "transfer_id": str(c.transfer_id) if c.transfer_id else None,
    }
