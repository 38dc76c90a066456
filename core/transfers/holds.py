"""Ending holds: capture (the money moves), void and expiry (the amount is released).

A hold ends exactly once: every ending locks the HELD transfer row first, then its accounts in
id order (the order settlement uses), checks the status under that lock and writes one
``transfer_actions`` row, unique per transfer. Racing captures, voids and the expiry sweep
therefore give one outcome; the others see the transfer ended (``TRANSFER_NOT_HELD``) or, for
the expiry sweep, pass it by (SKIP LOCKED). Balances, held totals, ledger entries, the status,
the audit row and the outbox events commit together in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core import audit, events, ledger
from core.accounts import limits, monitors, row_locks, usage
from core.db import database_now
from core.errors import (
    Forbidden,
    TransferNotHeld,
    ValidationFailed,
)
from core.models import Account, HoldAction, Role, Transfer, TransferAction, TransferStatus, User
from core.transfers import accept_rules, queries
from core.transfers.idempotency import find_bound, inserted_or_replay, request_fingerprint, validate_key

_T = Transfer.__table__
_A = Account.__table__
_ACTIONS = cast(Table, TransferAction.__table__)

_ENDED = {HoldAction.CAPTURE: TransferStatus.COMPLETED, HoldAction.VOID: TransferStatus.VOIDED}
_AUDIT = {HoldAction.CAPTURE: "transfer.captured", HoldAction.VOID: "transfer.voided"}

# One statement for a sweep's held totals, with array parameters (as settlement's balances).
_RELEASE = text(
    "UPDATE accounts SET held_amount = held_amount - r.amount, updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:amounts AS bigint[])) AS r(id, amount)"
    " WHERE accounts.id = r.id"
)
_EXPIRE = text(
    "UPDATE transfers SET status = 'EXPIRED', completed_at = now(), updated_at = now()"  # noqa: S608 -- formats in only the table's column names
    " WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'HELD'"
    f" RETURNING {', '.join(c.name for c in Transfer.__table__.c)}"
).columns(*Transfer.__table__.c)


@dataclass(frozen=True)
class Ended:
    transfer: Transfer
    created: bool  # False: an earlier request with the same key and body already ended it


def capture(
    session: Session,
    *,
    user: User,
    transfer_id: uuid.UUID,
    amount: int | None,
    idempotency_key: str | None,
    request_id: str | None = None,
) -> Ended:
    """Capture a HELD transfer: ``amount`` (default: all of it) moves from source to destination,
    the rest of the hold is released, and the transfer ends COMPLETED with ``captured_amount``.
    The source's owner or an admin only. Replays of the same key and body return the same
    transfer with ``created=False``."""
    return _end(session, user, transfer_id, HoldAction.CAPTURE, amount, idempotency_key, request_id)


def void(
    session: Session,
    *,
    user: User,
    transfer_id: uuid.UUID,
    idempotency_key: str | None,
    request_id: str | None = None,
) -> Ended:
    """Void a HELD transfer: its amount is released and it ends VOIDED. Either owner or an admin."""
    return _end(session, user, transfer_id, HoldAction.VOID, None, idempotency_key, request_id)


def action_fingerprint(action: HoldAction, transfer_id: uuid.UUID, amount: int | None) -> str:
    return request_fingerprint({"action": action.value, "transfer_id": str(transfer_id), "amount": amount})


def find_action_replay(session: Session, user_id: uuid.UUID, key: str, request_hash: str) -> TransferAction | None:
    """The capture or void already bound to this key, or None; another request under it is a 422."""
    replay: TransferAction | None = find_bound(session, TransferAction.initiated_by, user_id, key, request_hash)
    return replay


def _end(
    session: Session,
    user: User,
    transfer_id: uuid.UUID,
    action: HoldAction,
    amount: int | None,
    idempotency_key: str | None,
    request_id: str | None,
) -> Ended:
    key = validate_key(idempotency_key)
    request_hash = action_fingerprint(action, transfer_id, amount)
    if find_action_replay(session, user.id, key, request_hash) is not None:
        return Ended(_visible(session, transfer_id, user, action, lock=False), created=False)
    transfer = _visible(session, transfer_id, user, action, lock=True)
    # A duplicate of this request may have committed while this one waited for the row lock.
    if find_action_replay(session, user.id, key, request_hash) is not None:
        return Ended(transfer, created=False)
    if transfer.status != TransferStatus.HELD:
        raise TransferNotHeld(f"transfer is {transfer.status.value}, not HELD")
    # Past its expiry a hold is over, even before the sweep (expire_due, on the same clock: the
    # database's, which stamped the expiry, never this host's) ends it EXPIRED.
    if transfer.hold_expires_at is not None and transfer.hold_expires_at <= database_now(session):
        raise TransferNotHeld(f"the hold expired at {transfer.hold_expires_at.isoformat()}; it ends EXPIRED")
    if amount is not None and amount > transfer.amount:
        raise ValidationFailed(
            "capture amount exceeds the held amount", errors={"amount": [f"Must be at most {transfer.amount}."]}
        )
    moved = transfer.amount if amount is None else amount
    bound = session.execute(
        pg_insert(_ACTIONS)
        .values(
            id=uuid.uuid4(),
            transfer_id=transfer.id,
            action=action,
            amount=moved,
            initiated_by=user.id,
            idempotency_key=key,
            request_hash=request_hash,
            request_id=request_id,
        )
        .on_conflict_do_nothing(constraint="uq_transfer_actions_idempotency")
        .returning(_ACTIONS.c.id)
    ).scalar_one_or_none()
    # None: this user bound the key meanwhile to an action on another transfer (the same action
    # on this one was found above, under its row lock): the replay raises IDEMPOTENCY_KEY_REUSED.
    inserted_or_replay(bound, find_action_replay, session, user.id, key, request_hash)
    source, destination = _lock_accounts(session, transfer)
    if action is HoldAction.CAPTURE:  # money never moves out of or into a frozen account; a void may
        # The capturer's side is named; raising rolls the action back too.
        accept_rules.check_may_move(source, destination, sender_named="source account")
    before = monitors.values_of(source, destination)
    source.held_amount -= transfer.amount
    if usage.counts(transfer.kind):  # the hold counted all its amount as use: what it does not move is given back
        usage.release(session, [(source.id, transfer.created_at, transfer.amount - _moved(action, moved))])
    if action is HoldAction.CAPTURE:
        ledger.post(session, transfer, debit=source, credit=destination, amount=moved)
        transfer.captured_amount = moved
    transfer.status = _ENDED[action]
    transfer.completed_at = func.now()
    audit.record(
        session,
        action=_AUDIT[action],
        entity_type="transfer",
        entity_id=transfer.id,
        actor_id=user.id,
        request_id=request_id,
        details={"amount": moved, "held": transfer.amount},
    )
    session.flush()  # the events carry completed_at and updated_at as committed
    session.refresh(transfer)
    events.transfer_changed(session, transfer, source, destination)
    monitors.balances_changed(session, monitors.changes_since(before, (source, destination), transfer.id))
    return Ended(transfer, created=True)


def _moved(action: HoldAction, amount: int) -> int:
    """What an ending moves: the captured amount, nothing for a void."""
    return amount if action is HoldAction.CAPTURE else 0


def _visible(session: Session, transfer_id: uuid.UUID, user: User, action: HoldAction, *, lock: bool) -> Transfer:
    """The transfer if ``user`` may end it (someone else's is a 404); locked (FOR NO KEY UPDATE,
    re-read) when ``lock``. The destination's owner may void a hold but not capture it."""
    transfer = queries.get_visible(session, transfer_id, user)
    if lock:  # the same object, refreshed from the locked row: its status is the committed one
        transfer = session.scalars(
            select(Transfer)
            .where(Transfer.id == transfer_id)
            .with_for_update(key_share=True)  # ROW_LOCK, see core.db
            .execution_options(populate_existing=True)
        ).one()
    if (
        action is HoldAction.CAPTURE
        and user.role != Role.ADMIN
        and _owner(session, transfer.source_account_id) != user.id
    ):
        raise Forbidden("only the source account's owner may capture a hold")
    return transfer


def _owner(session: Session, account_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(Account.user_id).where(Account.id == account_id))


def _lock_accounts(session: Session, transfer: Transfer) -> tuple[Account, Account]:
    locked = {
        a.id: a
        for a in session.scalars(
            row_locks.locking(Account, ids=[transfer.source_account_id, transfer.destination_account_id])
        )
    }
    return locked[transfer.source_account_id], locked[transfer.destination_account_id]


def expire_due(session: Session, *, now: datetime | None = None, limit: int = 500) -> list[uuid.UUID]:
    """End up to ``limit`` holds whose expiry is at or before ``now`` (by default the database's
    clock, which stamped the expiries; never a host's) as EXPIRED, releasing their
    amounts; returns their ids. Set-based: a statement each for the held totals, statuses,
    actions, audit rows and events. Holds being captured or voided right now are locked and
    skipped: they end by that request, or by the next sweep if it rolls back."""
    due = session.execute(
        select(
            *(_T.c[c] for c in ("id", "source_account_id", "destination_account_id", "amount", "kind", "created_at"))
        )
        .where(_T.c.status == TransferStatus.HELD, _T.c.hold_expires_at <= (func.now() if now is None else now))
        .order_by(_T.c.id)
        .limit(limit)
        .with_for_update(key_share=True, skip_locked=True)
    ).all()
    if not due:
        return []
    released: dict[uuid.UUID, int] = {}
    for t in due:
        released[t.source_account_id] = released.get(t.source_account_id, 0) + t.amount
    sources = row_locks.in_lock_order(released)
    locked = session.execute(  # the sources' rows, before their held totals change
        row_locks.locking(_A.c.id, _A.c.balance, _A.c.held_amount, _A.c.credit_limit, ids=sources)
    ).all()
    session.execute(_RELEASE, {"ids": sources, "amounts": [released[a] for a in sources]})
    monitors.balances_changed(session, [_released(a, released[a.id]) for a in locked])
    ended = session.execute(_EXPIRE, {"ids": [t.id for t in due]}).all()
    usage.release(session, [(t.source_account_id, t.created_at, t.amount) for t in ended if usage.counts(t.kind)])
    session.execute(
        insert(_ACTIONS),
        [{"id": uuid.uuid4(), "transfer_id": t.id, "action": HoldAction.EXPIRE, "amount": t.amount} for t in ended],
    )
    audit.record_many(
        session,
        [
            audit.entry(
                action="transfer.expired",
                entity_type="transfer",
                entity_id=t.id,
                actor_id=None,
                request_id=t.request_id,
                details={"amount": t.amount},
            )
            for t in ended
        ],
    )
    owners = _owners(session, {t.source_account_id for t in ended} | {t.destination_account_id for t in ended})
    events.emit_many(session, [e for t in ended for e in _events(t, owners)])
    return [t.id for t in ended]


def _released(account: Any, amount: int) -> monitors.BalanceChange:
    """An expiry's change: the available balance rises by what was held (no transfer settled)."""
    before = limits.available(account.balance, account.held_amount, account.credit_limit)
    return monitors.BalanceChange(account.id, None, account.balance, account.balance, before, before + amount)


def _owners(session: Session, account_ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID | None]:
    return {r.id: r.user_id for r in session.execute(select(_A.c.id, _A.c.user_id).where(_A.c.id.in_(account_ids)))}


def _events(t: Any, owners: dict[uuid.UUID, uuid.UUID | None]) -> list[dict[str, Any]]:
    return events.transfer_events(
        t,
        source_owner=owners[t.source_account_id],
        destination_owner=owners[t.destination_account_id],
        balances_after=None,
    )
