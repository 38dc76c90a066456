"""Audit proofs: a transfer's audit rows with their Merkle inclusion proofs, and the chained
batch roots a client walks from its batch to the newest (any signed-in user: roots are not secret)."""

from __future__ import annotations

import uuid

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.audit.proofs import TransferAudit, transfer_audit
from core.audit.roots import Root, get_root, latest_root
from core.errors import NotFound
from core.transfers import queries
from web.context import snapshot
from web.docs import BEARER
from web.schemas import AuditRootOut, TransferAuditOut
from web.security import current_user

blp = Blueprint("transfer_audit", __name__, description="Audit proofs")


@blp.route("/transfers/<uuid:transfer_id>/audit", methods=["GET"])
@jwt_required()
@blp.response(200, TransferAuditOut)
@blp.doc(**BEARER)
def get_transfer_audit(transfer_id: uuid.UUID) -> TransferAudit:
    with snapshot() as session:
        # One snapshot: a batch sealed meanwhile is seen whole or not at all.
        queries.get_visible(session, transfer_id, current_user())  # same visibility as GET /transfers/{id}
        return transfer_audit(session, transfer_id)


@blp.route("/audit/roots/latest", methods=["GET"])
@jwt_required()
@blp.response(200, AuditRootOut)
@blp.doc(**BEARER)
def get_latest_root() -> Root:
    with snapshot() as session:
        root = latest_root(session)
    if root is None:
        raise NotFound("no audit batch is sealed yet")
    return root


@blp.route("/audit/roots/<int:n>", methods=["GET"])
@jwt_required()
@blp.response(200, AuditRootOut)
@blp.doc(**BEARER)
def get_root_n(n: int) -> Root:
    with snapshot() as session:
        return get_root(session, n)
