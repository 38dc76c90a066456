"""An admin's resolution of an UNMATCHED line (a break): credit it to a customer account (a
DEPOSIT by core/transfers/deposit.py, with that path's checks) or ignore it with a reason. Once
only: the line is locked and a second resolution is a 409. Audited ``reconciliation.line_resolved``.
The API and the console both call ``resolve``."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationFailed
from core.reconciliation import outcome
from core.reconciliation.models import LineStatus, MatchKind, ReconciliationLine

CREDIT = "credit"
IGNORE = "ignore"
MAX_REASON = 500
MAX_LINE = 2**31 - 1


def resolve(
    session: Session,
    import_id: uuid.UUID,
    line_number: int,
    *,
    action: str,
    account_id: uuid.UUID | None = None,
    reason: str | None = None,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> ReconciliationLine:
    if not 1 <= line_number <= MAX_LINE:  # the column is an integer: no such line, not a database error
        raise NotFound("reconciliation line not found")
    line = session.scalars(
        select(ReconciliationLine)
        .where(ReconciliationLine.import_id == import_id, ReconciliationLine.line == line_number)
        .with_for_update()
    ).one_or_none()
    if line is None:
        raise NotFound("reconciliation line not found")
    if line.status != LineStatus.UNMATCHED:
        raise Conflict(f"line {line_number} is already {line.status.value}")
    if action == CREDIT:
        _credit(session, line, account_id, actor_id, request_id)
    elif action == IGNORE:
        reason = (reason or "").strip()
        if not reason or len(reason) > MAX_REASON:
            raise ValidationFailed(
                "an ignored line needs a reason", errors={"reason": [f"Must be 1 to {MAX_REASON} characters."]}
            )
        line.match, line.reason = MatchKind.IGNORE, reason
    else:
        raise ValidationFailed("unknown action", errors={"action": ["Must be one of: credit, ignore."]})
    line.status = LineStatus.RESOLVED
    line.resolved_by = actor_id
    line.resolved_at = func.now()
    session.flush()
    session.refresh(line)
    details = outcome.described(
        line,
        action=action,
        account_id=str(line.account_id) if line.account_id else None,
        transfer_id=str(line.transfer_id) if line.transfer_id else None,
        reason=line.reason,
    )
    outcome.record(session, line, "reconciliation.line_resolved", details, actor_id=actor_id, request_id=request_id)
    return line


def _credit(
    session: Session,
    line: ReconciliationLine,
    account_id: uuid.UUID | None,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> None:
    if account_id is None:
        raise ValidationFailed("credit needs an account", errors={"account_id": ["Missing data for required field."]})
    if line.amount < 0:
        # Money that left the bank's account cannot be credited to a customer: ignore it (with
        # the reason) or fix the payout it belongs to.
        raise ValidationFailed(
            "a debit line cannot be credited", errors={"action": ["A debit line can only be ignored."]}
        )
    transfer_id = outcome.credit(
        session,
        line,
        account_id,
        reference=line.reference or line.bank_reference,
        actor_id=actor_id,
        request_id=request_id,
    )
    line.match, line.account_id, line.transfer_id = MatchKind.CREDIT, account_id, transfer_id
