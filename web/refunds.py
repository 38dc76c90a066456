"""/transfers/{id}/refunds: accept a refund (202, queued after commit) like any transfer."""

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
from core.observability import metrics
from core.transfers.refund import refund_transfer
from web.context import request_id, resources, settings, transaction
from web.docs import BEARER, IDEMPOTENCY_KEY, doc
from web.schemas import RefundIn, TransferOut
from web.security import current_user
from worker.settlement import nudge_after_accept

blp = Blueprint("refunds", __name__, url_prefix="/transfers", description="Refunds")


@blp.route("/<uuid:transfer_id>/refunds", methods=["POST"])
@jwt_required()
@blp.arguments(RefundIn)
@blp.response(202, TransferOut, description="The refund, a transfer of kind REFUND, PENDING")
@blp.alt_response(200, schema=TransferOut, description="Idempotent replay of an accepted refund")
@blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def create_refund(body: dict[str, Any], transfer_id: uuid.UUID) -> tuple[Transfer | Row[Any], int, dict[str, str]]:
    with transaction() as session:
        accepted = refund_transfer(
            session,
            user=current_user(),
            transfer_id=transfer_id,
            idempotency_key=request.headers.get("Idempotency-Key"),
            amount=body.get("amount"),
            reason=body.get("reason"),
            partitions=settings().settle_partitions,
            request_id=request_id(),
        )
        if accepted.created:
            publish_after_commit(session, nudge_after_accept, resources().redis, accepted.transfer.partition)
    refund = accepted.transfer
    headers = {"Location": url_for("transfers.get_transfer", transfer_id=refund.id)}
    if not accepted.created:
        return refund, 200, {**headers, "Idempotent-Replayed": "true"}
    metrics.TRANSFERS_ACCEPTED.labels(kind="REFUND").inc()
    structlog.contextvars.bind_contextvars(transfer_id=str(refund.id))
    return refund, 202, headers
