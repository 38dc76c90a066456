"""Refunds: a new transfer back from the original destination to the original source.

Only a COMPLETED customer TRANSFER is refundable. A DEPOSIT is not (its source is the bank's
settlement account: taking money back is an admin correction, not a refund) and neither is a
REFUND (refunding a refund is a plain transfer). Refunds of one transfer that are not FAILED
never sum to more than what it moved (``captured_amount`` for a captured hold): the accept
transaction locks the original row, so concurrent refunds of it are decided one at a time.
A refund that later FAILS (e.g. INSUFFICIENT_FUNDS) frees its amount for another refund.
"""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit, events
from core.db import ROW_LOCK
from core.errors import Conflict, Forbidden, NotFound, RefundExceedsAmount
from core.models import (
    Account,
    AccountKind,
    Role,
    Transfer,
    TransferKind,
    TransferStatus,
    User,
    UserStatus,
)
from core.money import validate_amount
from core.transfers import accept_rules
from core.transfers.idempotency import (
    KEY_CONSTRAINT,
    find_replay,
    inserted_or_replay,
    request_fingerprint,
    validate_key,
)
from core.transfers.routing import partition_of
from core.transfers.submit import Accepted

MAX_REASON_LENGTH = 140  # stored as the refund's reference (transfers.reference is VARCHAR(140))

# As on the accept path: a duplicate key does nothing, and the request is answered as a replay.
# Stamped when the INSERT runs on the database's clock (submit.ACCEPTED_AT says why): a refund
# may have waited for its original's row lock, and its transaction's start would place it
# before transfers that committed meanwhile.
_INSERT_REFUND = (
    insert(cast(Table, Transfer.__table__))
    .values(created_at=func.clock_timestamp(), updated_at=func.clock_timestamp())
    .on_conflict_do_nothing(constraint=KEY_CONSTRAINT)
    .returning(*Transfer.__table__.c)
)


def refund_fingerprint(original_id: uuid.UUID, amount: int | None, reason: str | None) -> str:
    """The request as sent: an omitted amount ("the rest") replays as the same request."""
    body = {"kind": TransferKind.REFUND.value, "refund_of": str(original_id), "amount": amount, "reason": reason}
    return request_fingerprint(body)


def refundable(session: Session, original: Transfer) -> int:
    """What is still refundable: the amount moved less the refunds of it not FAILED."""
    taken = session.scalar(
        select(func.coalesce(func.sum(Transfer.amount), 0)).where(
            Transfer.refund_of == original.id, Transfer.status != TransferStatus.FAILED
        )
    )
    moved = original.captured_amount if original.captured_amount is not None else original.amount
    return moved - int(taken or 0)


def refund_transfer(
    session: Session,
    *,
    user: User,
    transfer_id: uuid.UUID,
    idempotency_key: str | None,
    amount: int | None,
    reason: str | None,
    partitions: int = 1,
    request_id: str | None = None,
) -> Accepted:
    """Accept a refund of ``transfer_id`` as a PENDING REFUND transfer, in the caller's transaction.

    The caller is the original destination's owner or an admin (anyone else: 404). Replays of
    the same key and body return the refund already made, also when duplicates race. The
    caller commits, then queues settlement on the refund's partition.
    """
    key = validate_key(idempotency_key)
    if amount is not None:
        validate_amount(amount)
    request_hash = refund_fingerprint(transfer_id, amount, reason)
    replay = find_replay(session, user.id, key, request_hash)
    if replay is not None:
        return Accepted(replay, created=False)

    # The lock that serialises the refunds of one transfer. FOR NO KEY UPDATE (core.db): the
    # refund rows' foreign key takes KEY SHARE on it, which must not wait on this lock.
    original = session.get(Transfer, transfer_id, with_for_update=ROW_LOCK)
    if original is None:
        raise NotFound("transfer not found")
    source, destination = _accounts(session, original)
    if user.role != Role.ADMIN and destination.user_id != user.id:
        if source.user_id == user.id:  # the payer sees the transfer: no secret to keep
            raise Forbidden("only the destination account's owner can refund a transfer")
        raise NotFound("transfer not found")
    # A duplicate that held the lock before us has committed by now: answer with its refund.
    replay = find_replay(session, user.id, key, request_hash)
    if replay is not None:
        return Accepted(replay, created=False)
    _check(user, original, source, destination)

    remaining = refundable(session, original)
    wanted = remaining if amount is None else amount
    if remaining <= 0 or wanted > remaining:
        raise RefundExceedsAmount(
            f"refunds of this transfer may not exceed its amount; {max(remaining, 0)} is still refundable",
            refundable=max(remaining, 0),
        )
    inserted = session.execute(
        _INSERT_REFUND,
        {
            "id": uuid.uuid4(),
            "kind": TransferKind.REFUND,
            "initiated_by": user.id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "source_account_id": destination.id,
            "destination_account_id": source.id,
            "amount": wanted,
            "currency": original.currency,
            "reference": reason,
            "status": TransferStatus.PENDING,
            "request_id": request_id,
            "partition": partition_of(destination.id, partitions),
            "refund_of": original.id,
        },
    ).one_or_none()
    # None: the key was bound meanwhile by a request for another transfer.
    refund, created = inserted_or_replay(inserted, find_replay, session, user.id, key, request_hash)
    if not created:
        return Accepted(refund, created=False)
    audit.record(
        session,
        action="refund.requested",
        entity_type="transfer",
        entity_id=refund.id,
        actor_id=user.id,
        request_id=request_id,
        details={"refund_of": str(original.id), "amount": wanted, "currency": original.currency, "reason": reason},
    )
    # transfer.pending for both owners, committed with the row; the workers settle it as any transfer.
    events.transfer_changed(session, refund, destination, source)
    return Accepted(refund, created=True)


def _accounts(session: Session, original: Transfer) -> tuple[Account, Account]:
    ids = [original.source_account_id, original.destination_account_id]
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
    return accounts[original.source_account_id], accounts[original.destination_account_id]


def _check(user: User, original: Transfer, source: Account, destination: Account) -> None:
    if user.role != Role.ADMIN and user.status != UserStatus.ACTIVE:
        raise Forbidden("user is not active")
    if original.kind != TransferKind.TRANSFER:
        raise Conflict(f"a {original.kind.value} cannot be refunded, only a TRANSFER")
    if destination.kind != AccountKind.CUSTOMER:
        # A payout's transfer (to the bank's in-transit account, core/payouts): its money comes back
        # only as a return on the correspondent's statement (core/reconciliation), never as a refund.
        raise Conflict("a payout cannot be refunded; only the correspondent bank returns it")
    if original.status != TransferStatus.COMPLETED:
        raise Conflict(f"only a COMPLETED transfer can be refunded (it is {original.status.value})")
    # The refunder's own account (the refund's source) is named; the payer's (its destination) is not.
    accept_rules.check_may_move(destination, source, sender_named="the refund's source account")
