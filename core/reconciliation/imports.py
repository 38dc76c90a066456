"""POST /admin/reconciliations: a statement read whole, its new lines recorded and matched, in the
caller's one transaction. A file that cannot be read writes nothing; the same file (digest) or
the same camt.053 statement again is a 409 naming the earlier import; lines an earlier import
holds (an overlapping file) are counted, not recorded again, so never matched twice."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.errors import Conflict, NotFound
from core.reconciliation import formats, matching
from core.reconciliation.models import LineStatus, ReconciliationImport, ReconciliationLine
from core.reconciliation.own_account import OwnAccount
from core.reconciliation.statement import Statement, StatementLine


@dataclass(frozen=True)
class Imported:
    record: ReconciliationImport
    lines: int
    matched: int
    unmatched: int
    already_imported: int
    totals: dict[str, Any]


def import_statement(
    session: Session,
    *,
    body: bytes,
    media_type: str,
    own_account: OwnAccount,
    actor_id: uuid.UUID,
    request_id: str | None,
) -> Imported:
    digest = hashlib.sha256(body).hexdigest()
    _refuse_seen(session, ReconciliationImport.digest == digest, "this file")
    statement = formats.read(body, media_type)
    own_account.check(statement)
    if statement.statement_id is not None:
        _refuse_seen(session, ReconciliationImport.statement_id == statement.statement_id, "this statement")
    record = _record_import(session, statement, digest, actor_id, request_id)
    # Inserted in the order of their identity: two overlapping files imported at once wait for
    # each other's lines in one order, never in a cycle (a deadlock). Matched in the file's order.
    numbered = sorted(enumerate(statement.lines, 1), key=lambda pair: _identity(pair[1]))
    recorded = {n: _record_line(session, record, n, line) for n, line in numbered}
    new = [line for _, line in sorted(recorded.items()) if line is not None]
    for line in new:
        matching.match(session, line, actor_id=actor_id, request_id=request_id)
    record.already_imported = len(statement.lines) - len(new)
    matched = sum(1 for line in new if line.status == LineStatus.MATCHED)
    audit.record(
        session,
        action="reconciliation.imported",
        entity_type="reconciliation",
        entity_id=record.id,
        actor_id=actor_id,
        request_id=request_id,
        details={
            "format": statement.format.value,
            "digest": digest,
            "statement_id": statement.statement_id,
            "lines": len(statement.lines),
            "matched": matched,
            "unmatched": len(new) - matched,
            "already_imported": record.already_imported,
        },
    )
    session.flush()
    return Imported(record, len(statement.lines), matched, len(new) - matched, record.already_imported, record.totals)


def _refuse_seen(session: Session, condition: Any, what: str) -> None:
    earlier = session.scalars(select(ReconciliationImport.id).where(condition)).first()
    if earlier is not None:
        raise Conflict(f"{what} was already imported as reconciliation {earlier}", import_id=str(earlier))


def _record_import(
    session: Session, statement: Statement, digest: str, actor_id: uuid.UUID, request_id: str | None
) -> ReconciliationImport:
    import_id = session.execute(
        insert(ReconciliationImport)
        .values(
            id=uuid.uuid4(),
            format=statement.format.value,
            digest=digest,
            statement_id=statement.statement_id,
            line_count=len(statement.lines),
            already_imported=0,
            totals=totals(statement.lines),
            imported_by=actor_id,
            request_id=request_id,
        )
        # The same file sent twice at once: the second waits for the first's commit, then
        # inserts nothing (instead of a unique violation) and is told which import holds it.
        .on_conflict_do_nothing()
        .returning(ReconciliationImport.id)
    ).scalar_one_or_none()
    if import_id is None:
        _refuse_seen(session, ReconciliationImport.digest == digest, "this file")
        _refuse_seen(session, ReconciliationImport.statement_id == statement.statement_id, "this statement")
        raise Conflict("this statement was imported meanwhile")  # pragma: no cover - one of the above holds
    return session.get_one(ReconciliationImport, import_id)


def _record_line(
    session: Session, record: ReconciliationImport, number: int, line: StatementLine
) -> ReconciliationLine | None:
    """The line, recorded UNMATCHED; None if an earlier import holds its identity."""
    line_id = session.execute(
        insert(ReconciliationLine)
        .values(
            id=uuid.uuid4(),
            import_id=record.id,
            line=number,
            source=line.where[:80],
            account=line.account,
            currency=line.currency,
            booking_date=line.booking_date,
            amount=line.amount,
            bank_reference=line.bank_reference,
            end_to_end_id=line.end_to_end_id,
            reference=line.reference,
            counterparty=line.counterparty,
            status=LineStatus.UNMATCHED,
        )
        .on_conflict_do_nothing(constraint="uq_reconciliation_lines_identity")
        .returning(ReconciliationLine.id)
    ).scalar_one_or_none()
    return None if line_id is None else session.get_one(ReconciliationLine, line_id)


def _identity(line: StatementLine) -> tuple[str, str, int, str]:
    return (line.account, line.booking_date.isoformat(), line.amount, line.bank_reference)


def totals(lines: list[StatementLine]) -> dict[str, dict[str, int]]:
    """Per currency: the credits, the debits (as a positive sum) and the net of the file's lines."""
    sums: dict[str, dict[str, int]] = defaultdict(lambda: {"credits": 0, "debits": 0, "net": 0})
    for line in lines:
        entry = sums[line.currency]
        entry["credits" if line.amount > 0 else "debits"] += abs(line.amount)
        entry["net"] += line.amount
    return dict(sums)


def get(session: Session, import_id: uuid.UUID) -> tuple[ReconciliationImport, list[ReconciliationLine]]:
    record = session.get(ReconciliationImport, import_id)
    if record is None:
        raise NotFound("reconciliation not found")
    lines = session.scalars(
        select(ReconciliationLine).where(ReconciliationLine.import_id == import_id).order_by(ReconciliationLine.line)
    ).all()
    return record, list(lines)
