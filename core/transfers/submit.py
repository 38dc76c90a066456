"""Accepting a transfer: synchronous checks, then one PENDING row bound to its idempotency key."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, select, text
from sqlalchemy.orm import Session

from core.accounts import limits
from core.errors import (
    AccountInactive,
    CurrencyMismatch,
    Forbidden,
    KycNotApproved,
    NotFound,
    SameAccount,
    ValidationFailed,
)
from core.models import (
    Account,
    AccountKind,
    Transfer,
    TransferKind,
    TransferStatus,
    User,
)
from core.money import validate_amount, validate_currency
from core.transfers import accept_rules
from core.transfers.accept_rules import DESTINATION_CANNOT_RECEIVE
from core.transfers.idempotency import (
    ON_KEY_CONFLICT,
    MoneyMovement,
    find_replay,
    fingerprint,
    inserted_or_replay,
    validate_key,
)
from core.transfers.requested import record_requested
from core.transfers.routing import partition_of

DEFAULT_HOLD_SECONDS = 86_400
MIN_HOLD_SECONDS, MAX_HOLD_SECONDS = 60, 604_800

# When a transfer was accepted, on every accept path (this one, accept.py's one statement,
# batch.py): the database's clock, never the API host's. Settlement decides in
# (created_at, id) order and holds expire at created_at + their seconds, so with several API
# hosts a skewed host clock would reorder an account's debits and move expiries.
#
# clock_timestamp() (the moment the INSERT runs), not now() (the transaction's start): the
# row becomes visible to the drainer only at COMMIT, and the INSERT is the transaction's last
# write, so its clock is the closest stamp to that moment. now() would stamp a transfer that
# spent its transaction's first milliseconds on the token, PIN and account checks, or waited
# on a lock (a refund's original row, a concurrent duplicate's unique-index entry), earlier
# than transfers that committed while it waited and that a drainer may already have settled;
# the recorded accept order would then disagree with the order settlement saw. No stamp taken
# before COMMIT can be exact; this one keeps the window to the commit itself. It is taken once
# per statement (a CTE with a volatile function is evaluated once) so created_at, updated_at
# and hold_expires_at agree, and a batch's items add microseconds to it to keep request order.
ACCEPT_CLOCK_CTE = "accept_clock AS (SELECT clock_timestamp() AS at)"
ACCEPTED_AT = "accept_clock.at"
HOLD_EXPIRES_AT = "accept_clock.at + make_interval(secs => CAST(:hold_seconds AS integer))"  # NULL: not a hold

# A concurrent duplicate blocks on the unique index until the first commits, then does
# nothing: exactly one row per (user, key) whatever the interleaving. Text, not the dialect's
# insert().on_conflict_do_nothing(): that construct has no cache key, so SQLAlchemy compiled
# the accept path's hottest statement again on every request.
_T = cast(Table, Transfer.__table__)
_PENDING_COLUMNS = (
    "id", "kind", "initiated_by", "idempotency_key", "request_hash", "source_account_id",
    "destination_account_id", "amount", "currency", "reference", "status", "request_id",
    "partition", "hold", "metadata",
)  # fmt: skip
_INSERT_PENDING = (
    text(
        f"WITH {ACCEPT_CLOCK_CTE}"  # noqa: S608 -- formats in only the SQL constants above and the table's column names
        f" INSERT INTO transfers ({', '.join(_PENDING_COLUMNS)}, created_at, updated_at, hold_expires_at)"
        f" SELECT {', '.join(':' + c for c in _PENDING_COLUMNS)}, {ACCEPTED_AT}, {ACCEPTED_AT}, {HOLD_EXPIRES_AT}"
        " FROM accept_clock"
        f" {ON_KEY_CONFLICT}"
        f" RETURNING {', '.join(c.name for c in _T.c)}"
    )
    .bindparams(*(bindparam(c, type_=_T.c[c].type) for c in _PENDING_COLUMNS))
    .columns(*_T.c)
)


@dataclass(frozen=True)
class Accepted:
    transfer: Transfer | Row[Any]  # a Row with the same columns when just inserted
    created: bool  # False: an earlier request with the same key and body already made it


def submit_transfer(
    session: Session,
    *,
    user: User,
    idempotency_key: str,
    movement: MoneyMovement,
    partitions: int = 1,
    request_id: str | None = None,
    receiver: AccountKind = AccountKind.CUSTOMER,
) -> Accepted:
    """Check a customer transfer and write it PENDING with its key, race-safe against duplicates.

    A caller that wants a replay to skip the checks (the API) looks it up first with
    ``find_replay``; a key bound meanwhile is still caught here by the unique index. The
    caller commits, then queues settlement on ``partition_of(source, partitions)``.
    """
    key = validate_key(idempotency_key)
    request_hash = fingerprint(TransferKind.TRANSFER, movement)
    source, destination = _check(session, user, movement, receiver)
    inserted = session.execute(
        _INSERT_PENDING,
        {
            "id": uuid.uuid4(),
            "kind": TransferKind.TRANSFER,
            "initiated_by": user.id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "source_account_id": source.id,
            "destination_account_id": destination.id,
            "amount": movement.amount,
            "currency": movement.currency,
            "reference": movement.reference,
            "status": TransferStatus.PENDING,
            "request_id": request_id,
            "partition": partition_of(source.id, partitions),
            "hold": movement.hold,
            "metadata": movement.metadata,
            "hold_seconds": hold_seconds(movement),
        },
    ).one_or_none()
    transfer, created = inserted_or_replay(inserted, find_replay, session, user.id, key, request_hash)
    if not created:
        return Accepted(transfer, created=False)
    record_requested(session, [transfer.id])  # the audit row and transfer.pending, committed with the row
    return Accepted(transfer, created=True)


def validate_hold(movement: MoneyMovement) -> None:
    seconds = movement.hold_expires_in_seconds
    if seconds is None:
        return
    if not movement.hold:
        raise ValidationFailed(
            "hold_expires_in_seconds needs hold", errors={"hold_expires_in_seconds": ["Only allowed with hold: true."]}
        )
    if not MIN_HOLD_SECONDS <= seconds <= MAX_HOLD_SECONDS:
        raise ValidationFailed(
            "hold_expires_in_seconds out of range",
            errors={"hold_expires_in_seconds": [f"Must be between {MIN_HOLD_SECONDS} and {MAX_HOLD_SECONDS}."]},
        )


def hold_seconds(movement: MoneyMovement) -> int | None:
    """How long after its acceptance (``HOLD_EXPIRES_AT``) a hold ends EXPIRED if not captured
    or voided; None for a transfer that is not a hold."""
    if not movement.hold:
        return None
    return movement.hold_expires_in_seconds or DEFAULT_HOLD_SECONDS


def _check(
    session: Session, user: User, movement: MoneyMovement, receiver: AccountKind = AccountKind.CUSTOMER
) -> tuple[Account, Account]:
    validate_amount(movement.amount)
    validate_currency(movement.currency)
    validate_hold(movement)
    check_user(user)
    if movement.source_account_id == movement.destination_account_id:
        raise SameAccount("source and destination must differ")
    ids = [movement.source_account_id, movement.destination_account_id]
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
    return check_accounts(user, movement, accounts, receiver=receiver)


def check_user(user: User) -> None:
    """The caller may move money at all (the same for every transfer of a request)."""
    if not accept_rules.hold(accept_rules.KYC_APPROVED, user, {}):
        raise KycNotApproved("KYC must be approved before moving money")
    if not accept_rules.hold(accept_rules.USER_ACTIVE, user, {}):
        raise Forbidden("user is not active")


def check_source_owned(session: Session, user: User, movement: MoneyMovement) -> None:
    """The source is the caller's (someone else's, or none, is a 404), checked before the PIN."""
    if movement.source_account_id is None:
        raise NotFound("source account not found")
    source = session.execute(select(Account.user_id).where(Account.id == movement.source_account_id)).one_or_none()
    if source is None or not accept_rules.hold(accept_rules.SOURCE_OWNED, source, {"initiated_by": user.id}):
        raise NotFound("source account not found")


def check_accounts(
    user: User,
    movement: MoneyMovement,
    accounts: Mapping[uuid.UUID, Account],
    *,
    receiver: AccountKind = AccountKind.CUSTOMER,
) -> tuple[Account, Account]:
    """Source owned by ``user``, destination a customer's, currencies equal, both active, the
    amount within the source's per_transfer limit. ``receiver``: the kind the destination must
    be (a payout's transfer goes to the bank's IN_TRANSIT account, core/payouts; nothing else may).

    ``accounts`` holds (at least) both accounts if they exist; someone else's source is a 404.
    The checks are accept_rules' (the one-statement accept renders the same ones in SQL)."""
    request = {"initiated_by": user.id, "currency": movement.currency, "receiver": receiver}
    source = accounts.get(movement.source_account_id)  # type: ignore[arg-type]
    if source is None or not accept_rules.hold(accept_rules.SOURCE_OWNED, source, request):
        raise NotFound("source account not found")
    # After the owner (API.md's order): someone else's account as both sides is a 404 like any other.
    if movement.source_account_id == movement.destination_account_id:
        raise SameAccount("source and destination must differ")
    if not accept_rules.hold(accept_rules.SOURCE_IN_CURRENCY, source, request):
        raise CurrencyMismatch("transfer currency must match the source account")
    if not accept_rules.hold(accept_rules.SOURCE_ACTIVE, source, request):
        raise AccountInactive(f"source account is {source.status.value}")
    destination = accounts.get(movement.destination_account_id)
    if destination is None or not accept_rules.hold(accept_rules.CAN_RECEIVE, destination, request):
        # One answer for every destination that cannot take this transfer (missing, not a
        # customer's, frozen, inactive, closed, another currency): anyone may know an account
        # id, and a distinct answer would reveal its status or currency (e.g. a compliance freeze).
        raise NotFound(DESTINATION_CANNOT_RECEIVE)
    limits.check_per_transfer(source, movement.amount)
    return source, destination
