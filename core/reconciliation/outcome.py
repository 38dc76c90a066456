"""What became of a statement line, written one way whether the matcher decided it
(core/reconciliation/matching.py) or an admin did (resolve.py): the key that lets a line move
money once, the deposit a credit line makes, and the audit row of each outcome."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from core import audit
from core.reconciliation.models import ReconciliationLine
from core.transfers.deposit import deposit


def line_key(line: ReconciliationLine) -> str:
    """The Idempotency-Key of the transfer a line makes (a deposit, matched or resolved, or a
    payout's settlement or return): one per line, so a line moves money at most once."""
    return f"reconciliation:{line.id}"


def credit(
    session: Session,
    line: ReconciliationLine,
    account_id: uuid.UUID,
    *,
    reference: str | None,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> uuid.UUID:
    """Deposit the credit ``line``'s amount to ``account_id`` by core/transfers/deposit.py, with
    that path's checks (its errors propagate); the deposit transfer's id."""
    accepted = deposit(
        session,
        admin_id=actor_id,
        account_id=account_id,
        amount=line.amount,
        currency=line.currency,
        reference=reference,
        idempotency_key=line_key(line),
        request_id=request_id,
    )
    return accepted.transfer.id


def record(
    session: Session,
    line: ReconciliationLine,
    action: str,
    details: dict[str, Any],
    *,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> None:
    """Audit ``action`` (``reconciliation.line_…``) on ``line``, in the caller's transaction."""
    audit.record(
        session,
        action=action,
        entity_type="reconciliation_line",
        entity_id=line.id,
        actor_id=actor_id,
        request_id=request_id,
        details=details,
    )


def described(line: ReconciliationLine, **details: Any) -> dict[str, Any]:
    """``details`` after what the statement said of the line: its import, number, amount, currency."""
    return {
        "import_id": str(line.import_id),
        "line": line.line,
        "amount": line.amount,
        "currency": line.currency,
        **details,
    }
