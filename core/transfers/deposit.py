"""Deposits: money enters a customer account from the bank's settlement account, synchronously."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit, events, ledger
from core.accounts import monitors, row_locks
from core.accounts.service import settlement_account_id
from core.errors import AccountInactive, CurrencyMismatch, NotFound, ValidationFailed
from core.models import Account, AccountKind, Transfer, TransferKind, TransferStatus
from core.money import MAX_AMOUNT, validate_amount, validate_currency
from core.transfers import accept_rules
from core.transfers.idempotency import (
    KEY_CONSTRAINT,
    MoneyMovement,
    find_replay,
    fingerprint,
    inserted_or_replay,
    validate_key,
)
from core.transfers.submit import Accepted


def deposit(
    session: Session,
    *,
    admin_id: uuid.UUID,
    account_id: uuid.UUID,
    amount: int,
    currency: str,
    reference: str | None,
    idempotency_key: str | None,
    request_id: str | None = None,
) -> Accepted:
    """Credit ``account_id`` from the settlement account as one COMPLETED transfer (double entry)."""
    key = validate_key(idempotency_key)
    validate_amount(amount)
    validate_currency(currency)
    movement = MoneyMovement(None, account_id, amount, currency, reference)
    request_hash = fingerprint(TransferKind.DEPOSIT, movement)
    replay = find_replay(session, admin_id, key, request_hash)
    if replay is not None:
        return Accepted(replay, created=False)

    target = session.get(Account, account_id)
    if target is None or target.kind != AccountKind.CUSTOMER:
        raise NotFound("account not found")
    if target.currency != currency:
        raise CurrencyMismatch("deposit currency must match the account")
    settlement_id = settlement_account_id(session, currency)

    transfer_id = uuid.uuid4()
    inserted = session.execute(
        insert(Transfer)
        .values(
            id=transfer_id,
            kind=TransferKind.DEPOSIT,
            initiated_by=admin_id,
            idempotency_key=key,
            request_hash=request_hash,
            source_account_id=settlement_id,
            destination_account_id=account_id,
            amount=amount,
            currency=currency,
            reference=reference,
            status=TransferStatus.PENDING,
            request_id=request_id,
        )
        .on_conflict_do_nothing(constraint=KEY_CONSTRAINT)
        .returning(Transfer.id)
    ).one_or_none()
    bound, created = inserted_or_replay(inserted, find_replay, session, admin_id, key, request_hash)
    if not created:  # a concurrent duplicate bound the key first
        return Accepted(bound, created=False)

    locked = {a.id: a for a in session.scalars(row_locks.locking(Account, ids=[settlement_id, account_id]))}
    if not accept_rules.hold(accept_rules.ACTIVE, locked[account_id], {}):
        # Raising rolls back the insert too: a rejected request does not bind its key.
        raise AccountInactive(f"account is {locked[account_id].status.value}")
    if locked[account_id].balance + amount > MAX_AMOUNT or locked[settlement_id].balance - amount < -MAX_AMOUNT:
        # Balances stay within what every JSON client reads exactly (API.md); the check
        # constraint would refuse it too, but as a 500.
        raise ValidationFailed(
            "deposit would take a balance past the maximum",
            errors={"amount": [f"The account balance would exceed {MAX_AMOUNT}."]},
        )
    transfer = session.get_one(Transfer, transfer_id)
    before = monitors.values_of(locked[account_id])
    ledger.post(session, transfer, debit=locked[settlement_id], credit=locked[account_id])
    monitors.balances_changed(session, monitors.changes_since(before, (locked[account_id],), transfer_id))
    transfer.status = TransferStatus.COMPLETED
    transfer.completed_at = func.now()
    audit.record(
        session,
        action="deposit.completed",
        entity_type="transfer",
        entity_id=transfer_id,
        actor_id=admin_id,
        request_id=request_id,
        details={"account_id": str(account_id), "amount": amount, "currency": currency},
    )
    session.flush()
    session.refresh(transfer)
    # transfer.completed + account.credited for the customer (the settlement side has no owner).
    events.transfer_changed(session, transfer, locked[settlement_id], locked[account_id])
    return Accepted(transfer, created=True)
