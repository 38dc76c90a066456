"""Accepting a customer transfer over the API: the common case in one statement, else the
careful path.

The careful path (the full token check, ``find_replay``, the source's owner and the caller's
KYC, ``check_pin``, ``submit_transfer``) takes seven statements and names every refusal
precisely. The common case (a live token, the right PIN, nothing to refuse) is one statement:
the token's revocation and the caller's state, the PIN, the replay lookup, the account checks,
the PENDING row, its audit row and its outbox event. When that statement writes nothing and
finds no replay (a revoked token, a wrong PIN, a missing, foreign, frozen or wrong-currency
account, a concurrent duplicate that committed meanwhile...), the careful path runs in the same
transaction and decides exactly as before: both give the same answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, column, text
from sqlalchemy.orm import Session
from sqlalchemy.types import Boolean

from core.accounts import limits
from core.db import database_now
from core.errors import DomainError, IdempotencyKeyReused
from core.identity.pin_checks import PIN_OK_WITHOUT_WRITES_SQL, PinCheck, PinPolicy, check_pin
from core.identity.pins import hash_pin
from core.identity.tokens import LIVE_CALLER, TokenCaller
from core.models import AccountKind, Transfer, TransferKind, TransferStatus, User
from core.money import validate_amount, validate_currency
from core.transfers import accept_rules
from core.transfers.idempotency import ON_KEY_CONFLICT, MoneyMovement, find_replay, fingerprint, validate_key
from core.transfers.requested import requested_ctes
from core.transfers.routing import partition_of
from core.transfers.submit import (
    ACCEPT_CLOCK_CTE,
    ACCEPTED_AT,
    HOLD_EXPIRES_AT,
    Accepted,
    check_source_owned,
    check_user,
    hold_seconds,
    submit_transfer,
    validate_hold,
)

_T = cast(Table, Transfer.__table__)
_COLUMNS = ", ".join(c.name for c in _T.c)
_INSERTED = (
    "id", "kind", "initiated_by", "idempotency_key", "request_hash", "source_account_id",
    "destination_account_id", "amount", "currency", "reference", "status", "request_id",
    "partition", "hold", "metadata",
)  # fmt: skip

# The caller: a live token (tokens.LIVE_CALLER), KYC approved and active, and the PIN right
# with no failures to reset and no lock (pin_checks.PIN_OK_WITHOUT_WRITES_SQL: check_pin would
# say OK and write nothing). A replay is answered only to a caller who passes too; anyone else takes the careful path,
# which answers a replay before the PIN. The checks on the caller and the accounts are
# accept_rules' (rendered in SQL here, in Python by submit.check_user and check_accounts) and
# core.accounts.limits' per_transfer. The audit row and the event are every accept path's
# (requested.requested_ctes, over the inserted row). created_at, updated_at and
# hold_expires_at come from the database's clock (submit.ACCEPTED_AT says which and why), in
# this same statement, and so do the event's copies of them; the PIN lock's expiry is compared
# with the database's clock too.
_CALLER_MAY_MOVE_MONEY = accept_rules.sql("users", accept_rules.KYC_APPROVED, accept_rules.USER_ACTIVE)
_SOURCE_MAY_SEND = accept_rules.sql(
    "source", accept_rules.SOURCE_OWNED, accept_rules.SOURCE_IN_CURRENCY, accept_rules.SOURCE_ACTIVE
)
_DESTINATION_CAN_RECEIVE = accept_rules.sql("accounts", accept_rules.CAN_RECEIVE)
_ACCEPT = (
    text(
        f"""
WITH {ACCEPT_CLOCK_CTE}, caller AS (
    SELECT users.id FROM users
    WHERE {LIVE_CALLER}
      AND {_CALLER_MAY_MOVE_MONEY}
      AND {PIN_OK_WITHOUT_WRITES_SQL}
), replay AS (
    SELECT {_COLUMNS} FROM transfers
    WHERE initiated_by = :initiated_by AND idempotency_key = :idempotency_key AND EXISTS (SELECT 1 FROM caller)
), destination AS (
    SELECT user_id FROM accounts
    WHERE id = :destination_account_id AND {_DESTINATION_CAN_RECEIVE}
), inserted AS (
    INSERT INTO transfers ({", ".join(_INSERTED)}, created_at, updated_at, hold_expires_at)
    SELECT {", ".join(":" + c for c in _INSERTED)}, {ACCEPTED_AT}, {ACCEPTED_AT}, {HOLD_EXPIRES_AT}
    FROM caller, accounts source, destination, accept_clock
    WHERE source.id = :source_account_id
      AND {_SOURCE_MAY_SEND}
      AND {limits.per_transfer_allows_sql("source", ":amount")}
      AND NOT EXISTS (SELECT 1 FROM replay)
    {ON_KEY_CONFLICT}
    RETURNING {_COLUMNS}
), {requested_ctes("inserted")}
SELECT {_COLUMNS}, true AS created FROM inserted
UNION ALL
SELECT {_COLUMNS}, false AS created FROM replay
"""  # noqa: S608 -- formats in only column names of the Transfer table, enum constants and SQL fragments of core; every value is a bind parameter
    )
    .bindparams(*(bindparam(c, type_=_T.c[c].type) for c in _INSERTED))
    .columns(*_T.c, column("created", Boolean))
)


@dataclass(frozen=True)
class AcceptOutcome:
    accepted: Accepted | None  # None: refused by the PIN check
    pin: PinCheck


def accept_transfer(
    session: Session,
    *,
    caller: TokenCaller | None,
    load_user: Callable[[], User],
    idempotency_key: str,
    movement: MoneyMovement,
    pin: str,
    pin_policy: PinPolicy,
    partitions: int = 1,
    request_id: str | None = None,
) -> AcceptOutcome:
    """The one statement for the caller a token names; when it writes nothing, ``load_user``
    (the full token check: it raises for a token that is not live) and the careful path."""
    if caller is not None:
        quick = accept_in_one_statement(
            session,
            caller=caller,
            pin=pin,
            pin_pepper=pin_policy.pepper,
            idempotency_key=idempotency_key,
            movement=movement,
            partitions=partitions,
            request_id=request_id,
        )
        if quick is not None:
            return AcceptOutcome(quick, PinCheck.OK)
    return accept_carefully(
        session,
        user=load_user(),
        idempotency_key=idempotency_key,
        movement=movement,
        pin=pin,
        pin_policy=pin_policy,
        partitions=partitions,
        request_id=request_id,
    )


def accept_carefully(
    session: Session,
    *,
    user: User,
    idempotency_key: str,
    movement: MoneyMovement,
    pin: str,
    pin_policy: PinPolicy,
    partitions: int = 1,
    request_id: str | None = None,
    receiver: AccountKind = AccountKind.CUSTOMER,
) -> AcceptOutcome:
    """A replay gets its transfer back before any other check; then the source's owner and the
    caller's KYC; then the PIN (a wrong one counts, and the caller commits the count before
    raising); then the other checks and the PENDING row. ``receiver``: the destination's kind
    (submit.check_accounts; IN_TRANSIT for a payout's transfer)."""
    key = validate_key(idempotency_key)
    replay = find_replay(session, user.id, key, fingerprint(TransferKind.TRANSFER, movement))
    if replay is not None:
        return AcceptOutcome(Accepted(replay, created=False), PinCheck.OK)
    # The contract's order: the source is the caller's, then KYC, then the PIN; neither of the
    # first two is the PIN's business, so a refusal there counts no PIN failure.
    check_source_owned(session, user, movement)
    check_user(user)
    checked = check_pin(
        session,
        user_id=user.id,
        pin=pin,
        policy=pin_policy,
        now=database_now(session),  # the lock's expiry on the clock the one statement compares with
        request_id=request_id,
        known_user=user,
    )
    if checked is not PinCheck.OK:
        return AcceptOutcome(None, checked)
    accepted = submit_transfer(
        session,
        user=user,
        idempotency_key=key,
        movement=movement,
        partitions=partitions,
        request_id=request_id,
        receiver=receiver,
    )
    return AcceptOutcome(accepted, PinCheck.OK)


def accept_in_one_statement(
    session: Session,
    *,
    caller: TokenCaller,
    pin: str,
    pin_pepper: bytes,
    idempotency_key: str,
    movement: MoneyMovement,
    partitions: int = 1,
    request_id: str | None = None,
) -> Accepted | None:
    """Accept a transfer whose every check passes, or find its replay, in one statement.

    None: take the careful path (``accept_carefully`` after the full token check), which gives
    the exact answer; this wrote nothing.
    """
    try:
        key = validate_key(idempotency_key)
        validate_amount(movement.amount)
        validate_currency(movement.currency)
        validate_hold(movement)
    except DomainError:
        return None
    if movement.source_account_id is None or movement.source_account_id == movement.destination_account_id:
        return None
    request_hash = fingerprint(TransferKind.TRANSFER, movement)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "kind": TransferKind.TRANSFER,
        "initiated_by": caller.user_id,
        "idempotency_key": key,
        "request_hash": request_hash,
        "source_account_id": movement.source_account_id,
        "destination_account_id": movement.destination_account_id,
        "amount": movement.amount,
        "currency": movement.currency,
        "reference": movement.reference,
        "status": TransferStatus.PENDING,
        "request_id": request_id,
        "partition": partition_of(movement.source_account_id, partitions),
        "hold": movement.hold,
        "metadata": movement.metadata,
        "hold_seconds": hold_seconds(movement),
    }
    row = (
        session.connection()
        .execute(
            _ACCEPT,
            {
                **values,
                **caller.params(),
                "pin_hash": hash_pin(pin_pepper, caller.user_id, pin),
                "receiver": AccountKind.CUSTOMER.value,  # accept_rules.CAN_RECEIVE: a customer's account
            },
        )
        .one_or_none()
    )
    if row is None:
        return None
    if not row.created and row.request_hash != request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return Accepted(row, created=row.created)
