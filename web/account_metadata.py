"""PATCH /accounts/{id}: the owner sets the account's metadata (core/metadata.py)."""

from __future__ import annotations

import uuid
from typing import Any

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core import metadata
from core.models import Account
from web.context import request_id, transaction
from web.docs import BEARER
from web.metadata_field import MetadataIn
from web.schemas import AccountOut, Strict
from web.security import current_user

blp = Blueprint("account_metadata", __name__, url_prefix="/accounts", description="Account metadata")


class AccountPatchIn(Strict):
    metadata = MetadataIn(required=True)


@blp.route("/<uuid:account_id>", methods=["PATCH"])
@jwt_required()
@blp.arguments(AccountPatchIn)
@blp.response(200, AccountOut)
@blp.doc(description="Replaces the account's metadata (`{}` or `null` removes it); owner only. Audited.", **BEARER)
def patch_account(body: dict[str, Any], account_id: uuid.UUID) -> Account:
    with transaction() as session:
        return metadata.set_account_metadata(
            session, account_id, body["metadata"], user=current_user(), request_id=request_id()
        )
