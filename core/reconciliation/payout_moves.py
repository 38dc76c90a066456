"""What a statement line does to a payout: settled (the in-transit money leaves for the bank's
correspondent account) or returned (the money goes back to the customer). Each is one COMPLETED
transfer between bank and customer accounts, posted by core.ledger with its audit row and events,
in the import's transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.orm import Session

from core import audit, events, ledger
from core.accounts import monitors, row_locks
from core.accounts.service import in_transit_account_id, settlement_account_id
from core.models import Account, AccountKind, Transfer, TransferKind, TransferStatus
from core.payouts.models import Payout, PayoutStatus
from core.payouts.payouts import PayoutView, payout_data
from core.reconciliation import outcome
from core.reconciliation.models import ReconciliationLine
from core.transfers.idempotency import MoneyMovement, fingerprint


def settle(
    session: Session, payout: Payout, line: ReconciliationLine, actor_id: uuid.UUID, request_id: str | None
) -> Transfer:
    """SENT → SETTLED: in-transit → settlement (the correspondent account's side in the books)."""
    transfer = _move(
        session,
        TransferKind.PAYOUT_SETTLE,
        source_id=in_transit_account_id(session, payout.currency),
        destination_id=settlement_account_id(session, payout.currency),
        payout=payout,
        line=line,
        actor_id=actor_id,
        request_id=request_id,
    )
    _changed(session, payout, PayoutStatus.SETTLED, transfer, line, actor_id, request_id)
    return transfer


def give_back(
    session: Session, payout: Payout, line: ReconciliationLine, actor_id: uuid.UUID, request_id: str | None
) -> Transfer:
    """SENT or SETTLED → RETURNED: the money back to the account it left. From in-transit if the
    payout never settled, else from the settlement account (it came back into the correspondent
    account). Credited whatever the account's status: it is the customer's money."""
    source = (
        in_transit_account_id(session, payout.currency)
        if payout.status == PayoutStatus.SENT
        else settlement_account_id(session, payout.currency)
    )
    transfer = _move(
        session,
        TransferKind.PAYOUT_RETURN,
        source_id=source,
        destination_id=payout.source_account_id,
        payout=payout,
        line=line,
        actor_id=actor_id,
        request_id=request_id,
    )
    _changed(session, payout, PayoutStatus.RETURNED, transfer, line, actor_id, request_id)
    return transfer


def _move(
    session: Session,
    kind: TransferKind,
    *,
    source_id: uuid.UUID,
    destination_id: uuid.UUID,
    payout: Payout,
    line: ReconciliationLine,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> Transfer:
    movement = MoneyMovement(source_id, destination_id, payout.amount, payout.currency, line.bank_reference)
    transfer = Transfer(
        id=uuid.uuid4(),
        kind=kind,
        initiated_by=actor_id,
        # One line moves money once: the line's id binds the transfer (the lines' identity
        # constraint already keeps a line from being imported twice).
        idempotency_key=outcome.line_key(line),
        request_hash=fingerprint(kind, movement),
        source_account_id=source_id,
        destination_account_id=destination_id,
        amount=payout.amount,
        currency=payout.currency,
        reference=line.bank_reference,
        status=TransferStatus.PENDING,
        request_id=request_id,
    )
    session.add(transfer)
    session.flush()  # the transfer's row before its entries reference it
    locked = {a.id: a for a in session.scalars(row_locks.locking(Account, ids=[source_id, destination_id]))}
    source, destination = locked[source_id], locked[destination_id]
    customers = tuple(a for a in (source, destination) if a.kind == AccountKind.CUSTOMER)
    before = monitors.values_of(*customers)
    ledger.post(session, transfer, debit=source, credit=destination)
    monitors.balances_changed(session, monitors.changes_since(before, customers, transfer.id))
    transfer.status = TransferStatus.COMPLETED
    transfer.completed_at = func.now()
    session.flush()
    session.refresh(transfer)
    events.transfer_changed(session, transfer, source, destination)
    return transfer


def _changed(
    session: Session,
    payout: Payout,
    status: PayoutStatus,
    transfer: Transfer,
    line: ReconciliationLine,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> None:
    previous = payout.status
    payout.status = status
    session.flush()
    action = "payout.settled" if status == PayoutStatus.SETTLED else "payout.returned"
    audit.record(
        session,
        action=action,
        entity_type="payout",
        entity_id=payout.id,
        actor_id=actor_id,
        request_id=request_id,
        details={
            "from": previous.value,
            "transfer_id": str(transfer.id),
            "reconciliation_line_id": str(line.id),
            "bank_reference": line.bank_reference,
            "amount": payout.amount,
            "currency": payout.currency,
        },
    )
    event = events.EventType.PAYOUT_SETTLED if status == PayoutStatus.SETTLED else events.EventType.PAYOUT_RETURNED
    # The payout as the API shows it (its transfer COMPLETED: a file took it), like payout.sent.
    data = payout_data(PayoutView(payout, TransferStatus.COMPLETED, None))
    events.emit(session, event, {**data, "movement_transfer_id": str(transfer.id)}, [payout.user_id])
