"""/transfers: accept (202, queued after commit), poll, list."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from flask import request, url_for
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint
from sqlalchemy import Row

from core.after_commit import publish_after_commit
from core.models import Transfer
from core.observability import metrics, tracing
from core.pagination import Page
from core.transfers import holds, queries
from core.transfers.accept import accept_transfer
from core.transfers.idempotency import MoneyMovement, validate_key
from web.context import request_id, resources, settings, transaction
from web.docs import BEARER, IDEMPOTENCY_KEY, doc
from web.me import pin_policy
from web.problems import PROBLEM_JSON
from web.schemas import CaptureIn, ProblemOut, TransferIn, TransferListArgs, TransferOut, TransferPage, VoidIn
from web.security import checked_current_user, current_user, token_caller, token_checked_in_view
from worker.settlement import nudge_after_accept

blp = Blueprint("transfers", __name__, url_prefix="/transfers", description="Transfers")

NOT_HELD = "`TRANSFER_NOT_HELD`: the transfer is not `HELD` (still `PENDING`, or already ended)"


def _location(transfer: Transfer | Row[Any]) -> str:
    return url_for("transfers.get_transfer", transfer_id=transfer.id)


@blp.route("", methods=["POST"])
@token_checked_in_view
@blp.arguments(TransferIn())  # an instance: webargs would build one from a class on every request (~0.1 ms)
@blp.response(202, TransferOut)
@blp.alt_response(200, schema=TransferOut, description="Idempotent replay of an accepted transfer")
@blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def create_transfer(body: dict[str, Any]) -> tuple[Transfer | Row[Any], int, dict[str, str]]:
    key = validate_key(request.headers.get("Idempotency-Key"))
    pin = body.pop("pin")
    movement = MoneyMovement(
        source_account_id=body["source_account_id"],
        destination_account_id=body["destination_account_id"],
        amount=body["amount"],
        currency=body["currency"],
        reference=body.get("reference"),
        hold=body["hold"],
        hold_expires_in_seconds=body.get("hold_expires_in_seconds"),
        metadata=body.get("metadata"),
    )
    # One transaction: the token's revocation, the replay lookup (a retry gets its transfer back
    # before any other check), the PIN, the checks and the insert. A wrong PIN commits its
    # failure count.
    with tracing.span("accept_transfer") as span, transaction() as session:
        outcome = accept_transfer(
            session,
            caller=token_caller(),
            load_user=checked_current_user,
            idempotency_key=key,
            movement=movement,
            pin=pin,
            pin_policy=pin_policy(),
            partitions=settings().settle_partitions,
            request_id=request_id(),
        )
        accepted = outcome.accepted
        if accepted is not None and accepted.created:
            tracing.set_attribute(span, "transfer.id", accepted.transfer.id)
            publish_after_commit(session, nudge_after_accept, resources().redis, accepted.transfer.partition)
    outcome.pin.raise_if_failed()
    assert accepted is not None
    if not accepted.created:
        return _replayed(accepted.transfer)  # a retry, or a concurrent duplicate bound the key first
    transfer = accepted.transfer
    metrics.TRANSFERS_ACCEPTED.labels(kind="TRANSFER").inc()
    structlog.contextvars.bind_contextvars(transfer_id=str(transfer.id))
    return transfer, 202, {"Location": _location(transfer)}


def _replayed(transfer: Transfer | Row[Any]) -> tuple[Transfer | Row[Any], int, dict[str, str]]:
    return transfer, 200, {"Location": _location(transfer), "Idempotent-Replayed": "true"}


@blp.route("/<uuid:transfer_id>/capture", methods=["POST"])
@jwt_required()
@blp.arguments(CaptureIn())
@blp.response(202, TransferOut, description="Captured: the transfer, COMPLETED with captured_amount")
@blp.alt_response(200, schema=TransferOut, description="Idempotent replay of an accepted capture")
@blp.alt_response(409, schema=ProblemOut, content_type=PROBLEM_JSON, description=NOT_HELD)
@blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def capture_transfer(body: dict[str, Any], transfer_id: uuid.UUID) -> tuple[Transfer, int, dict[str, str]]:
    """Capture a hold (source owner or admin): all of it or ``amount``; the rest is released."""
    with transaction() as session:
        ended = holds.capture(
            session,
            user=current_user(),
            transfer_id=transfer_id,
            amount=body.get("amount"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            request_id=request_id(),
        )
    return _ended(ended)


@blp.route("/<uuid:transfer_id>/void", methods=["POST"])
@jwt_required()
@blp.arguments(VoidIn())
@blp.response(202, TransferOut, description="Voided: the transfer, VOIDED, its amount released")
@blp.alt_response(200, schema=TransferOut, description="Idempotent replay of an accepted void")
@blp.alt_response(409, schema=ProblemOut, content_type=PROBLEM_JSON, description=NOT_HELD)
@blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def void_transfer(body: dict[str, Any], transfer_id: uuid.UUID) -> tuple[Transfer, int, dict[str, str]]:
    """Void a hold (source or destination owner, or admin): the amount is released."""
    with transaction() as session:
        ended = holds.void(
            session,
            user=current_user(),
            transfer_id=transfer_id,
            idempotency_key=request.headers.get("Idempotency-Key"),
            request_id=request_id(),
        )
    return _ended(ended)


def _ended(ended: holds.Ended) -> tuple[Transfer, int, dict[str, str]]:
    headers = {"Location": _location(ended.transfer)}
    if not ended.created:
        return ended.transfer, 200, {**headers, "Idempotent-Replayed": "true"}
    return ended.transfer, 202, headers


@blp.route("/<uuid:transfer_id>", methods=["GET"])
@jwt_required()
@blp.response(200, TransferOut)
@blp.doc(**BEARER)
def get_transfer(transfer_id: uuid.UUID) -> Transfer:
    with transaction() as session:
        return queries.get_visible(session, transfer_id, current_user())


@blp.route("", methods=["GET"])
@jwt_required()
@blp.arguments(TransferListArgs(), location="query")  # instances, built once (TransferIn above)
@blp.response(200, TransferPage)
@blp.doc(**BEARER)
def list_transfers(args: dict[str, Any]) -> Page[Transfer]:
    """Transfers from or to the caller's accounts, newest first; an admin lists every transfer."""
    with transaction() as session:
        return queries.list_visible(
            session,
            current_user(),
            status=args.get("status"),
            account_id=args.get("account_id"),
            metadata=args.get("metadata"),
            cursor=args.get("cursor"),
            limit=args["limit"],
        )
