"""/counterparties (where a customer's payouts go), /payouts (owner-scoped) and the admins'
/admin/payout-files (pain.001 files of PENDING payouts)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, request, url_for
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint
from marshmallow import fields, validate

from core.after_commit import publish_after_commit
from core.pagination import Page
from core.payouts import counterparties, files, payouts
from core.payouts.models import Counterparty, PayoutFile, PayoutStatus
from web.context import request_id, resources, settings, transaction
from web.docs import BEARER, IDEMPOTENCY_KEY, doc
from web.me import pin_policy
from web.problems import PROBLEM_JSON
from web.schemas import CURRENCY, PIN, FullMatch, MinorUnits, PageArgs, ProblemOut, Strict, by_value, page_of
from web.security import admin_required, checked_current_user, current_user
from worker.settlement import nudge_after_accept

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


payouts_blp = Blueprint("payouts", __name__, url_prefix="/payouts", description="Payouts to counterparties")
payout_files_blp = Blueprint(
    "payout_files", __name__, url_prefix="/admin/payout-files", description="Payout files (pain.001.001.03)"
)


class PayoutIn(Strict):
    source_account_id = fields.UUID(required=True)
    counterparty_id = fields.UUID(required=True)
    amount = MinorUnits(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    pin = fields.String(required=True, load_only=True, validate=PIN)
    reference = fields.String(validate=validate.Length(max=140), allow_none=True)


class PayoutOut(ma.Schema):
    id = fields.UUID()
    transfer_id = fields.UUID()
    status = by_value(PayoutStatus)
    end_to_end_id = fields.String(metadata={"description": "The pain.001 EndToEndId the bank's statement names."})
    source_account_id = fields.UUID()
    counterparty_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    reference = fields.String(allow_none=True)
    file_id = fields.UUID(allow_none=True, metadata={"description": "The payout file that sent it (once SENT)."})
    failure_code = fields.String(allow_none=True, metadata={"description": "Its transfer's, when FAILED."})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


PayoutPage = page_of(PayoutOut, "PayoutPage")


def _location(view: payouts.PayoutView) -> str:
    return url_for("payouts.get_payout", payout_id=view.id)


@payouts_blp.route("", methods=["POST"])
@jwt_required()
@payouts_blp.arguments(PayoutIn())
@payouts_blp.response(202, PayoutOut)
@payouts_blp.alt_response(200, schema=PayoutOut, description="Idempotent replay of an accepted payout")
@payouts_blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def create_payout(body: dict[str, Any]) -> tuple[payouts.PayoutView, int, dict[str, str]]:
    """Pay a counterparty.

    Checked as a transfer (KYC, PIN, the source account, currency, limits); the worker moves the
    amount to the bank's in-transit account; a payout file sends it."""
    with transaction() as session:
        requested = payouts.request_payout(
            session,
            user=checked_current_user(),
            idempotency_key=request.headers.get("Idempotency-Key"),
            pin_policy=pin_policy(),
            partitions=settings().settle_partitions,
            request_id=request_id(),
            **body,
        )
        if requested.created and requested.partition is not None:
            publish_after_commit(session, nudge_after_accept, resources().redis, requested.partition)
    requested.pin.raise_if_failed()  # a wrong PIN's count committed above
    view = requested.view
    assert view is not None
    headers = {"Location": _location(view)}
    if not requested.created:
        return view, 200, {**headers, "Idempotent-Replayed": "true"}
    return view, 202, headers


@payouts_blp.route("", methods=["GET"])
@jwt_required()
@payouts_blp.arguments(PageArgs, location="query")
@payouts_blp.response(200, PayoutPage)
@payouts_blp.doc(**BEARER)
def list_payouts(args: dict[str, Any]) -> Page[payouts.PayoutView]:
    """The caller's payouts, newest first; an admin lists every payout."""
    with transaction() as session:
        return payouts.list_visible(session, current_user(), cursor=args.get("cursor"), limit=args["limit"])


@payouts_blp.route("/<uuid:payout_id>", methods=["GET"])
@jwt_required()
@payouts_blp.response(200, PayoutOut)
@payouts_blp.doc(**BEARER)
def get_payout(payout_id: uuid.UUID) -> payouts.PayoutView:
    """A payout (its owner or an admin)."""
    with transaction() as session:
        return payouts.get_visible(session, payout_id, current_user())


class PayoutFileIn(Strict):
    currency = fields.String(required=True, validate=CURRENCY)


class PayoutFileOut(ma.Schema):
    id = fields.UUID()
    format = fields.String()
    currency = fields.String()
    payouts = fields.Integer(attribute="payout_count", metadata={"description": "How many payouts it sends."})
    total = fields.Integer(metadata={"description": "Their sum, in minor units."})
    created_at = fields.DateTime()


_XML = "application/xml"
NOTHING_TO_SEND = "`CONFLICT`: no `PENDING` payout of that currency whose transfer is `COMPLETED`"
_FILE_DOC: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "The pain.001.001.03 document",
            "content": {_XML: {"schema": {"type": "string"}}},
        }
    }
}


@payout_files_blp.route("", methods=["POST"])
@admin_required
@payout_files_blp.arguments(PayoutFileIn)
@payout_files_blp.response(201, PayoutFileOut)
@payout_files_blp.alt_response(409, schema=ProblemOut, content_type=PROBLEM_JSON, description=NOTHING_TO_SEND)
@payout_files_blp.doc(**BEARER)
def create_payout_file(body: dict[str, Any]) -> PayoutFile:
    """Make a payout file (admin).

    Every PENDING payout of the currency whose money has left the customer (its transfer
    COMPLETED), in one pain.001.001.03 file; they become SENT."""
    debtor = files.Debtor(settings().payout_debtor_name, settings().payout_debtor_iban, settings().payout_debtor_bic)
    with transaction() as session:
        return files.create_file(
            session, admin_id=current_user().id, currency=body["currency"], debtor=debtor, request_id=request_id()
        )


@payout_files_blp.route("/<uuid:file_id>", methods=["GET"])
@admin_required
@payout_files_blp.doc(**doc(BEARER, _FILE_DOC))
def download_payout_file(file_id: uuid.UUID) -> Response:
    """Download a payout file (admin).

    The pain.001.001.03 document as sent (application/xml)."""
    with transaction() as session:
        payout_file = files.get_file(session, file_id)
        return Response(
            payout_file.content,
            mimetype=_XML,
            headers={"Content-Disposition": f'attachment; filename="payouts-{payout_file.id}.xml"'},
        )
