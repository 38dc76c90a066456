"""Payouts: money to a counterparty at another bank.

A payout is accepted exactly as a transfer is (core/transfers/accept.py, the careful path: the
replay, the source's owner, KYC, the PIN, the amount, currency, status and per_transfer checks
of submit.check_accounts), its destination the bank's IN_TRANSIT account of the currency; the
workers settle that transfer like any other (balances, ledger entries, credit line, daily and
monthly limits, audit, events). The payout row is written with the transfer, in one transaction.

Its status: PENDING until a payout file takes it (SENT, core/payouts/files.py), then SETTLED or
RETURNED by the correspondent's statement (core/reconciliation). When its transfer FAILED,
nothing left the customer and no file will take it: it is shown FAILED, read from the transfer
(``shown_status``), so it is exact the moment settlement commits, with no second write.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.accounts.service import in_transit_account_id
from core.errors import CurrencyMismatch, IdempotencyKeyReused, NotFound
from core.identity.pin_checks import PinCheck, PinPolicy
from core.models import AccountKind, Role, Transfer, TransferStatus, User
from core.money import validate_amount, validate_currency
from core.pagination import Page, newest_first, paginate
from core.payouts.models import Counterparty, Payout, PayoutStatus
from core.transfers.accept import accept_carefully
from core.transfers.idempotency import MoneyMovement, validate_key


@dataclass(frozen=True)
class PayoutView:
    """A payout as the API shows it: its status read with its transfer's."""

    payout: Payout
    transfer_status: TransferStatus
    failure_code: str | None

    @property
    def status(self) -> PayoutStatus:
        return shown_status(self.payout.status, self.transfer_status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.payout, name)


@dataclass(frozen=True)
class Requested:
    view: PayoutView | None  # None: refused by the PIN check (``pin`` says why)
    created: bool
    pin: PinCheck
    partition: int | None = None  # the transfer's settlement partition, to nudge after commit


def shown_status(stored: PayoutStatus, transfer_status: TransferStatus) -> PayoutStatus:
    """PENDING while its transfer is PENDING or COMPLETED; FAILED once the transfer FAILED (no
    file takes it: core/payouts/files.py gathers only payouts whose transfer COMPLETED)."""
    if stored == PayoutStatus.PENDING and transfer_status == TransferStatus.FAILED:
        return PayoutStatus.FAILED
    return stored


def transfer_key(idempotency_key: str) -> str:
    """The payout's transfer's key: its own namespace among the caller's transfer keys, and
    within the column's 255 characters whatever the client's key."""
    return "payout:" + hashlib.sha256(validate_key(idempotency_key).encode()).hexdigest()


def request_payout(
    session: Session,
    *,
    user: User,
    idempotency_key: str | None,
    source_account_id: uuid.UUID,
    counterparty_id: uuid.UUID,
    amount: int,
    currency: str,
    pin: str,
    pin_policy: PinPolicy,
    reference: str | None = None,
    partitions: int = 1,
    request_id: str | None = None,
) -> Requested:
    """Accept a payout as a transfer to the bank's in-transit account, or replay it.

    The counterparty must be the caller's (anyone else's, or none, is a 404, before the PIN) and
    in the payout's currency; every other rule is the transfer's. Same key and body: the same
    payout (``created`` False); same key, another body: IdempotencyKeyReused."""
    key = transfer_key(idempotency_key or "")
    validate_amount(amount)
    validate_currency(currency)  # before the in-transit account of that currency is made
    counterparty = session.get(Counterparty, counterparty_id)
    if counterparty is None or counterparty.user_id != user.id:
        raise NotFound("counterparty not found")
    if counterparty.currency != currency:
        raise CurrencyMismatch("payout currency must match the counterparty's")
    movement = MoneyMovement(source_account_id, in_transit_account_id(session, currency), amount, currency, reference)
    outcome = accept_carefully(
        session,
        user=user,
        idempotency_key=key,
        movement=movement,
        pin=pin,
        pin_policy=pin_policy,
        partitions=partitions,
        request_id=request_id,
        receiver=AccountKind.IN_TRANSIT,
    )
    accepted = outcome.accepted
    if accepted is None:
        return Requested(None, False, outcome.pin)
    transfer = accepted.transfer
    if not accepted.created:
        # A retry, or a concurrent duplicate that committed first: its payout committed with it.
        payout = session.scalar(select(Payout).where(Payout.transfer_id == transfer.id))
        if payout is None or payout.counterparty_id != counterparty_id:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        return Requested(PayoutView(payout, transfer.status, transfer.failure_code), False, PinCheck.OK)
    payout_id = uuid.uuid4()
    payout = Payout(
        id=payout_id,
        user_id=user.id,
        source_account_id=source_account_id,
        counterparty_id=counterparty_id,
        amount=amount,
        currency=currency,
        reference=reference,
        status=PayoutStatus.PENDING,
        end_to_end_id=payout_id.hex,  # 32 characters of [0-9a-f]: within Max35Text and SEPA's set
        transfer_id=transfer.id,
    )
    session.add(payout)
    session.flush()  # created_at, from the database, for the response
    audit.record(
        session,
        action="payout.requested",
        entity_type="payout",
        entity_id=payout_id,
        actor_id=user.id,
        request_id=request_id,
        details={
            "transfer_id": str(transfer.id),
            "counterparty_id": str(counterparty_id),
            "amount": amount,
            "currency": currency,
            "end_to_end_id": payout.end_to_end_id,
        },
    )
    session.refresh(payout)
    return Requested(PayoutView(payout, transfer.status, None), True, PinCheck.OK, transfer.partition)


def _visible(user: User) -> Callable[[Any], Any]:
    def scope(stmt: Any) -> Any:
        return stmt if user.role == Role.ADMIN else stmt.where(Payout.user_id == user.id)

    return scope


def get_visible(session: Session, payout_id: uuid.UUID, user: User) -> PayoutView:
    """The payout, for its owner or an admin; anyone else gets a 404."""
    row = session.execute(
        _visible(user)(_with_transfer().where(Payout.id == payout_id)),
    ).one_or_none()
    if row is None:
        raise NotFound("payout not found")
    return PayoutView(*row)


def list_visible(session: Session, user: User, *, cursor: str | None, limit: int) -> Page[PayoutView]:
    """The caller's payouts (an admin's: everyone's), newest first."""
    page = paginate(session, _visible(user)(select(Payout)), newest_first(Payout), cursor, limit)
    ids = [p.transfer_id for p in page.items]
    statuses = {
        t.id: (t.status, t.failure_code)
        for t in session.execute(
            select(Transfer.id, Transfer.status, Transfer.failure_code).where(Transfer.id.in_(ids))
        )
    }
    return Page([PayoutView(p, *statuses[p.transfer_id]) for p in page.items], page.next_cursor)


def _with_transfer() -> Any:
    return select(Payout, Transfer.status, Transfer.failure_code).join(Transfer, Transfer.id == Payout.transfer_id)


def payout_data(view: PayoutView, *, at: datetime | None = None) -> dict[str, Any]:
    """The payout as the API shows it, for event payloads."""
    p = view.payout
    return {
        "id": str(p.id),
        "transfer_id": str(p.transfer_id),
        "status": view.status.value,
        "end_to_end_id": p.end_to_end_id,
        "source_account_id": str(p.source_account_id),
        "counterparty_id": str(p.counterparty_id),
        "amount": p.amount,
        "currency": p.currency,
        "reference": p.reference,
        "file_id": str(p.file_id) if p.file_id else None,
        "failure_code": view.failure_code,
        "created_at": p.created_at.astimezone(UTC).isoformat(),
        "updated_at": (at or p.updated_at).astimezone(UTC).isoformat(),
    }
