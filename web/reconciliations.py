"""/admin/reconciliations: import the correspondent bank's statement (camt.053, BAI2 or CSV as
the body), read its lines and their matches, resolve the breaks. Admin only."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint
from marshmallow import fields, validate, validates_schema

from core.reconciliation import imports
from core.reconciliation import resolve as resolutions
from core.reconciliation.formats import READERS
from core.reconciliation.models import LineStatus, MatchKind, ReconciliationImport, ReconciliationLine
from core.reconciliation.own_account import OwnAccount
from web.context import request_id, settings, transaction
from web.docs import BEARER
from web.hardening import raw_body
from web.problems import problem
from web.schemas import Strict, by_value
from web.security import admin_required, current_user

blp = Blueprint("reconciliations", __name__, url_prefix="/admin/reconciliations", description="Reconciliation (admin)")

# A day's statement of a busy correspondent account is a few MB of camt.053; past this, 413.
MAX_STATEMENT_BYTES = 10 * 1024 * 1024

_STATEMENT_BODY = {
    "required": True,
    "description": "The statement file as sent by the correspondent bank.",
    "content": {
        "application/xml": {"schema": {"type": "string", "description": "camt.053.001.02"}},
        "text/plain": {"schema": {"type": "string", "description": "BAI2"}},
        "text/csv": {
            "schema": {
                "type": "string",
                "description": "Header `booking_date,amount,currency,reference,end_to_end_id,counterparty`; "
                "`amount` signed minor units (negative: money left the bank's account).",
            }
        },
    },
}


class CurrencyTotals(ma.Schema):
    credits = fields.Integer()
    debits = fields.Integer()
    net = fields.Integer()


class ImportOut(ma.Schema):
    id = fields.UUID()
    format = fields.String()
    statement_id = fields.String(allow_none=True)
    lines = fields.Integer(metadata={"description": "The file's lines."})
    matched = fields.Integer(metadata={"description": "Settlements, returns and inbound credits it matched."})
    unmatched = fields.Integer(metadata={"description": "Breaks left for an admin."})
    already_imported = fields.Integer(
        metadata={"description": "Lines an earlier import holds (an overlapping file): not matched again."}
    )
    totals = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(CurrencyTotals),
        metadata={"description": "Per currency, over the file's lines: credits, debits and net, minor units."},
    )
    created_at = fields.DateTime()


class MatchedTo(ma.Schema):
    kind = by_value(MatchKind)
    transfer_id = fields.UUID()
    payout_id = fields.UUID(allow_none=True)
    account_id = fields.UUID(allow_none=True)


class Resolution(ma.Schema):
    action = fields.String(metadata={"description": "credit or ignore"})
    account_id = fields.UUID(allow_none=True)
    transfer_id = fields.UUID(allow_none=True)
    reason = fields.String(allow_none=True)
    resolved_by = fields.UUID()
    resolved_at = fields.DateTime()


class LineOut(ma.Schema):
    line = fields.Integer()
    status = by_value(LineStatus)
    source = fields.String(metadata={"description": "Where in the file: a line number or an element."})
    booking_date = fields.Date()
    amount = fields.Integer(metadata={"description": "Signed minor units: negative, money left the bank's account."})
    currency = fields.String()
    bank_reference = fields.String()
    end_to_end_id = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    counterparty = fields.String(allow_none=True)
    matched_to = fields.Method("_matched_to", metadata={"description": "With MATCHED."})
    resolution = fields.Method("_resolution", metadata={"description": "With RESOLVED."})

    def _matched_to(self, line: ReconciliationLine) -> dict[str, Any] | None:
        if line.status != LineStatus.MATCHED:
            return None
        return MatchedTo().dump(_as_match(line))

    def _resolution(self, line: ReconciliationLine) -> dict[str, Any] | None:
        if line.status != LineStatus.RESOLVED:
            return None
        return Resolution().dump(
            {
                "action": resolutions.IGNORE if line.match == MatchKind.IGNORE else resolutions.CREDIT,
                "account_id": line.account_id,
                "transfer_id": line.transfer_id,
                "reason": line.reason,
                "resolved_by": line.resolved_by,
                "resolved_at": line.resolved_at,
            }
        )


def _as_match(line: ReconciliationLine) -> dict[str, Any]:
    return {
        "kind": line.match,
        "transfer_id": line.transfer_id,
        "payout_id": line.payout_id,
        "account_id": line.account_id,
    }


class ReconciliationOut(ImportOut):
    resolved = fields.Integer()
    items = fields.List(fields.Nested(LineOut))


class ResolveIn(Strict):
    action = fields.String(required=True, validate=validate.OneOf([resolutions.CREDIT, resolutions.IGNORE]))
    account_id = fields.UUID(metadata={"description": "With credit: the customer account credited."})
    reason = fields.String(
        validate=validate.Length(min=1, max=resolutions.MAX_REASON), metadata={"description": "With ignore."}
    )

    @validates_schema
    def _one_shape(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("action") == resolutions.CREDIT:
            if "account_id" not in data:
                raise ma.ValidationError("Required with action credit.", "account_id")
            if "reason" in data:
                raise ma.ValidationError("Only with action ignore.", "reason")
        if data.get("action") == resolutions.IGNORE:
            if "reason" not in data:
                raise ma.ValidationError("Required with action ignore.", "reason")
            if "account_id" in data:
                raise ma.ValidationError("Only with action credit.", "account_id")


def _import_out(record: ReconciliationImport, **counts: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "format": record.format,
        "statement_id": record.statement_id,
        "lines": record.line_count,
        "already_imported": record.already_imported,
        "totals": record.totals,
        "created_at": record.created_at,
        **counts,
    }


@blp.route("", methods=["POST"])
@raw_body
@admin_required
@blp.response(201, ImportOut)
@blp.doc(requestBody=_STATEMENT_BODY, **BEARER)
def import_statement() -> Any:
    """Import the correspondent bank's statement

    camt.053, BAI2 or CSV, by Content-Type. Answered after its lines are matched, in one
    transaction; a malformed file is `422` `RECONCILIATION_FILE_INVALID` (naming the line or
    element in `where`) and changes nothing; the same file or camt.053 statement again is `409`
    naming the earlier import (`import_id`)."""
    if request.mimetype not in READERS:
        return problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "a statement is application/xml (camt.053), text/plain (BAI2) or text/csv",
        )
    body = request.get_data(cache=False)
    if not body:
        return problem(422, "RECONCILIATION_FILE_INVALID", "the statement is empty", where="byte 0")
    own_account = OwnAccount(settings().payout_debtor_iban, settings().payout_debtor_account_number)
    with transaction() as session:
        imported = imports.import_statement(
            session,
            body=body,
            media_type=request.mimetype,
            own_account=own_account,
            actor_id=current_user().id,
            request_id=request_id(),
        )
        return _import_out(imported.record, matched=imported.matched, unmatched=imported.unmatched), 201


@blp.route("/<uuid:import_id>", methods=["GET"])
@admin_required
@blp.response(200, ReconciliationOut)
@blp.doc(**BEARER)
def get_reconciliation(import_id: uuid.UUID) -> dict[str, Any]:
    """A statement import and its lines (admin)

    Each line MATCHED (with what), UNMATCHED (a break) or RESOLVED."""
    with transaction() as session:
        record, lines = imports.get(session, import_id)
        counts = {s: sum(1 for line in lines if line.status == s) for s in LineStatus}
        return _import_out(
            record,
            matched=counts[LineStatus.MATCHED],
            unmatched=counts[LineStatus.UNMATCHED],
            resolved=counts[LineStatus.RESOLVED],
            items=lines,
        )


@blp.route("/<uuid:import_id>/lines/<int:line>/resolve", methods=["POST"])
@admin_required
@blp.arguments(ResolveIn)
@blp.response(200, LineOut)
@blp.doc(**BEARER)
def resolve_line(body: dict[str, Any], import_id: uuid.UUID, line: int) -> ReconciliationLine:
    """Resolve a statement line (admin)

    Credit the break to a customer account (a `DEPOSIT`, checked as one) or ignore it with a reason.
    A line already matched or resolved is `409`."""
    with transaction() as session:
        return resolutions.resolve(
            session,
            import_id,
            line,
            action=body["action"],
            account_id=body.get("account_id"),
            reason=body.get("reason"),
            actor_id=current_user().id,
            request_id=request_id(),
        )
