"""What a statement line is, in the books (API.md "Matching"):

- a debit whose ``end_to_end_id`` is a SENT payout's, for its amount and currency: the payout
  settled (core/reconciliation/payout_moves.py);
- a credit carrying a SENT or SETTLED payout's ``end_to_end_id``, for its amount and currency:
  the payout came back, the money goes back to the customer;
- a credit whose reference names a customer account's inbound reference: a DEPOSIT to that
  account, made by core/transfers/deposit.py like an admin's deposit;
- anything else (or a deposit the account refuses: frozen, other currency): UNMATCHED, a break
  for an admin to resolve.

Each match is audited (``reconciliation.line_matched``) with the money movement it made.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import DomainError
from core.payouts.models import Payout, PayoutStatus
from core.reconciliation import inbound_reference, outcome, payout_moves
from core.reconciliation.models import LineStatus, MatchKind, ReconciliationLine


def match(session: Session, line: ReconciliationLine, *, actor_id: uuid.UUID, request_id: str | None) -> None:
    """Match ``line`` (UNMATCHED, just recorded) and move its money, or leave it UNMATCHED."""
    if line.amount < 0:
        payout = _payout(session, line, (PayoutStatus.SENT,))
        if payout is not None:
            transfer = payout_moves.settle(session, payout, line, actor_id, request_id)
            _matched(session, line, MatchKind.PAYOUT_SETTLED, transfer.id, actor_id, request_id, payout_id=payout.id)
        return
    payout = _payout(session, line, (PayoutStatus.SENT, PayoutStatus.SETTLED))
    if payout is not None:
        transfer = payout_moves.give_back(session, payout, line, actor_id, request_id)
        _matched(session, line, MatchKind.PAYOUT_RETURNED, transfer.id, actor_id, request_id, payout_id=payout.id)
        return
    account_id = inbound_reference.account_named(line.reference) or inbound_reference.account_named(line.end_to_end_id)
    if account_id is None:
        return
    try:
        with session.begin_nested():  # a refused deposit leaves the line a break, the import goes on
            transfer_id = outcome.credit(
                session, line, account_id, reference=line.reference, actor_id=actor_id, request_id=request_id
            )
    except DomainError as refused:
        outcome.record(
            session,
            line,
            "reconciliation.line_unmatched",
            {"account_id": str(account_id), "refused": refused.code, "detail": refused.detail},
            actor_id=actor_id,
            request_id=request_id,
        )
        return
    _matched(session, line, MatchKind.DEPOSIT, transfer_id, actor_id, request_id, account_id=account_id)


def _payout(session: Session, line: ReconciliationLine, statuses: Collection[PayoutStatus]) -> Payout | None:
    """The payout the line names, locked, if it is in one of ``statuses`` and the line is for
    exactly its amount and currency; a partial or foreign-currency line is a break, not a match."""
    if not line.end_to_end_id:
        return None
    payout = session.scalars(
        select(Payout).where(Payout.end_to_end_id == line.end_to_end_id).with_for_update()
    ).one_or_none()
    if payout is None or payout.status not in statuses:
        return None
    if payout.currency != line.currency or payout.amount != abs(line.amount):
        return None
    return payout


def _matched(
    session: Session,
    line: ReconciliationLine,
    kind: MatchKind,
    transfer_id: uuid.UUID,
    actor_id: uuid.UUID,
    request_id: str | None,
    *,
    payout_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
) -> None:
    line.status = LineStatus.MATCHED
    line.match = kind
    line.transfer_id = transfer_id
    line.payout_id = payout_id
    line.account_id = account_id
    details = outcome.described(
        line,
        match=kind.value,
        transfer_id=str(transfer_id),
        payout_id=str(payout_id) if payout_id else None,
        account_id=str(account_id) if account_id else None,
        bank_reference=line.bank_reference,
    )
    outcome.record(session, line, "reconciliation.line_matched", details, actor_id=actor_id, request_id=request_id)
