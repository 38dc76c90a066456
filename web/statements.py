"""/accounts/{id}/statement: a period's opening balance, entries and closing balance, JSON or CSV."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

import marshmallow as ma
from flask import Response, current_app, request
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core import statements
from core.errors import NotAcceptable, ValidationFailed
from web.context import resources, snapshot
from web.docs import BEARER, doc
from web.schemas import StatementArgs, StatementOut
from web.security import current_user

blp = Blueprint("statements", __name__, url_prefix="/accounts", description="Account statements")

JSON, CSV = "application/json", "text/csv"

# Both representations of the 200, written out: a manual doc replaces what @blp.response generates.
_BOTH_DOC: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "The statement: JSON (default) or, with `Accept: text/csv`, a CSV file",
            "content": {
                JSON: {"schema": StatementOut},
                CSV: {
                    "schema": {"type": "string"},
                    "example": "created_at,transfer_id,amount,balance_after,reference\r\n",
                },
            },
        }
    }
}


_PERIOD: dict[str, Any] = {
    "parameters": [
        {
            "in": "query",
            "name": name,
            "required": True,
            "schema": {"type": "string", "format": "date-time"},
            "description": description,
        }
        for name, description in (
            ("from", "RFC 3339 instant with an offset; included."),
            ("to", "RFC 3339 instant with an offset; excluded."),
        )
    ]
    + [
        {
            "in": "query",
            "name": "cursor",
            "required": False,
            "schema": {"type": "string"},
            "description": "JSON only: a page's next_cursor, with the same from and to.",
        }
    ]
}


@blp.route("/<uuid:account_id>/statement", methods=["GET"])
@jwt_required()
@blp.response(200, StatementOut, description="JSON (default) or, with Accept: text/csv, a CSV file")
@blp.doc(**doc(BEARER, _PERIOD, _BOTH_DOC))
def get_statement(account_id: uuid.UUID) -> Response:
    # An unsupported Accept is refused before any work; no Accept (or */*) means JSON.
    accept = request.accept_mimetypes
    wanted = accept.best_match([JSON, CSV]) if accept else JSON
    if wanted is None:
        raise NotAcceptable(f"this resource is offered as {JSON} or {CSV}")
    if wanted == CSV:
        return _csv(account_id)
    with snapshot() as session:
        # One snapshot: the opening balance and the entries see the same settlements.
        # Ownership first: someone else's account is a 404 whatever the parameters.
        account = statements.visible_account(session, account_id, current_user())
        args = _args()
        page = statements.statement(session, account, args["from_"], args["to"], cursor=args.get("cursor"))
    return _json(page)


# StatementOut without its entries: the page's few fields go through the schema, its (up to
# 10,000) entries through _entry_json, which writes what StatementEntryOut would.
_HEAD = StatementOut(exclude=("entries",))


def _json(page: statements.Statement) -> Response:
    """The page as @blp.response would write it with StatementOut (same keys, same values, the
    app's JSON provider), in a fraction of the time: a nested schema dump costs tens of
    microseconds an entry, a heavy account's statement has thousands (issue 28)."""
    body = _HEAD.dump(page)
    body["entries"] = [_entry_json(e) for e in page.entries]
    return cast(Response, current_app.json.response(body))


def _entry_json(e: statements.StatementEntry) -> dict[str, Any]:
    # As StatementEntryOut dumps them: datetimes by isoformat() (the app's provider would write an
    # HTTP date), UUIDs as str() does, which orjson writes itself.
    return {
        "id": e.id,
        "transfer_id": e.transfer_id,
        "amount": e.amount,
        "balance_after": e.balance_after,
        "reference": e.reference,
        "created_at": e.created_at.isoformat(),
    }


def _csv(account_id: uuid.UUID) -> Response:
    """The whole period, streamed: cut and frozen in one snapshot, then read in chunks while the
    rows are written out (``statements.stream``)."""
    with snapshot() as session:
        account = statements.visible_account(session, account_id, current_user())
        args = _args()
        if args.get("cursor"):
            raise ValidationFailed("a CSV statement is one file", errors={"cursor": ["Only for JSON pages."]})
        period = statements.frozen(session, statements.period(session, account, args["from_"], args["to"]))
    rows = statements.stream(resources().sessions, period)
    return Response(
        statements.csv_chunks(rows),
        mimetype=CSV,
        headers={"Content-Disposition": f'attachment; filename="{_filename(period)}"'},
    )


def _args() -> dict[str, Any]:
    try:
        return StatementArgs().load(request.args.to_dict())
    except ma.ValidationError as error:  # unknown parameters too: a mistyped one is not ignored
        raise ValidationFailed("request validation failed", errors=error.messages) from error


def _filename(period: statements.Period) -> str:
    def stamp(moment: datetime) -> str:
        return statements.rfc3339(moment).replace("-", "").replace(":", "")

    return f"statement-{period.account_id}-{stamp(period.start)}-{stamp(period.end)}.csv"
