"""/counterparties: where a customer's payouts go (owner-scoped)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint
from marshmallow import fields, validate

from core.pagination import Page
from core.payouts import counterparties
from core.payouts.models import Counterparty
from web.context import request_id, transaction
from web.docs import BEARER
from web.schemas import CURRENCY, FullMatch, PageArgs, Strict, page_of
from web.security import checked_current_user, current_user

counterparties_blp = Blueprint(
    "counterparties", __name__, url_prefix="/counterparties", description="Counterparties at other banks"
)


class CounterpartyIn(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=140))
    currency = fields.String(required=True, validate=CURRENCY)
    iban = fields.String(validate=validate.Length(min=5, max=42), metadata={"description": "Spaces allowed."})
    account_number = fields.String(validate=FullMatch(r"^[0-9]{4,17}$", error="Must be 4 to 17 digits."))
    routing_number = fields.String(validate=FullMatch(r"^[0-9]{9}$", error="Must be 9 digits."))


class CounterpartyOut(ma.Schema):
    id = fields.UUID()
    name = fields.String()
    iban = fields.String(allow_none=True)
    account_number_last4 = fields.String(allow_none=True)
    currency = fields.String()
    created_at = fields.DateTime()


CounterpartyPage = page_of(CounterpartyOut, "CounterpartyPage")


@counterparties_blp.route("", methods=["POST"])
@jwt_required()
@counterparties_blp.arguments(CounterpartyIn())
@counterparties_blp.response(201, CounterpartyOut)
@counterparties_blp.doc(**BEARER)
def create_counterparty(body: dict[str, Any]) -> Counterparty:
    """A counterparty with an IBAN, or an account number and a routing number."""
    with transaction() as session:
        return counterparties.create(session, user=checked_current_user(), request_id=request_id(), **body)


@counterparties_blp.route("", methods=["GET"])
@jwt_required()
@counterparties_blp.arguments(PageArgs, location="query")
@counterparties_blp.response(200, CounterpartyPage)
@counterparties_blp.doc(**BEARER)
def list_counterparties(args: dict[str, Any]) -> Page[Counterparty]:
    """The caller's counterparties, newest first."""
    with transaction() as session:
        return counterparties.list_owned(session, current_user(), cursor=args.get("cursor"), limit=args["limit"])


@counterparties_blp.route("/<uuid:counterparty_id>", methods=["GET"])
@jwt_required()
@counterparties_blp.response(200, CounterpartyOut)
@counterparties_blp.doc(**BEARER)
def get_counterparty(counterparty_id: uuid.UUID) -> Counterparty:
    with transaction() as session:
        return counterparties.get_owned(session, counterparty_id, current_user())
