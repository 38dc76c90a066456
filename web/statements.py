"""/accounts/{id}/statement: a period's opening balance, entries and closing balance, JSON or CSV."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core import statements
from core.errors import NotAcceptable
from web.context import transaction
from web.docs import BEARER, doc
from web.schemas import StatementArgs, StatementOut
from web.security import me

blp = Blueprint("statements", __name__, url_prefix="/accounts", description="Account statements")

JSON, CSV = "application/json", "text/csv"

_CSV_DOC: dict[str, Any] = {
    "responses": {
        "200": {
            "content": {
                CSV: {
                    "schema": {"type": "string"},
                    "example": "created_at,transfer_id,amount,balance_after,reference\r\n",
                }
            }
        }
    }
}


@blp.route("/<uuid:account_id>/statement", methods=["GET"])
@jwt_required()
@blp.arguments(StatementArgs, location="query", unknown=ma.RAISE)  # a mistyped parameter is a 422
@blp.response(200, StatementOut, description="JSON (default) or, with Accept: text/csv, a CSV file")
@blp.doc(**doc(BEARER, _CSV_DOC))
def get_statement(args: dict[str, Any], account_id: uuid.UUID) -> statements.Statement | Response:
    # An unsupported Accept is refused before any work; no Accept (or */*) means JSON.
    accept = request.accept_mimetypes
    wanted = accept.best_match([JSON, CSV]) if accept else JSON
    if wanted is None:
        raise NotAcceptable(f"this resource is offered as {JSON} or {CSV}")
    with transaction() as session:
        # One snapshot: the opening balance and the entries see the same settlements.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        account = statements.visible_account(session, account_id, me())
        stmt = statements.statement(session, account, args["from_"], args["to"])
    if wanted == JSON:
        return stmt
    return Response(
        statements.to_csv(stmt),
        mimetype=CSV,
        headers={"Content-Disposition": f'attachment; filename="{_filename(stmt)}"'},
    )


def _filename(stmt: statements.Statement) -> str:
    def stamp(moment: datetime) -> str:
        return statements.rfc3339(moment).replace("-", "").replace(":", "")

    return f"statement-{stmt.account_id}-{stamp(stmt.start)}-{stamp(stmt.end)}.csv"
