"""/transfers/{id}/audit: a transfer's audit rows with their Merkle inclusion proofs."""

from __future__ import annotations

import uuid

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.audit.proofs import TransferAudit, transfer_audit
from core.transfers import queries
from web.context import snapshot
from web.docs import BEARER
from web.schemas import TransferAuditOut
from web.security import current_user

blp = Blueprint("transfer_audit", __name__, url_prefix="/transfers", description="Audit proofs")


@blp.route("/<uuid:transfer_id>/audit", methods=["GET"])
@jwt_required()
@blp.response(200, TransferAuditOut)
@blp.doc(**BEARER)
def get_transfer_audit(transfer_id: uuid.UUID) -> TransferAudit:
    with snapshot() as session:
        # One snapshot: a batch sealed meanwhile is seen whole or not at all.
        queries.get_visible(session, transfer_id, current_user())  # same visibility as GET /transfers/{id}
        return transfer_audit(session, transfer_id)
