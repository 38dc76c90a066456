"""/accounts: the caller's own accounts and their ledger entries."""

from __future__ import annotations

import uuid
from typing import Any

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.accounts import service as accounts
from core.models import Account
from core.pagination import Page
from core.transfers import queries
from web.context import request_id, settings, transaction
from web.docs import BEARER
from web.schemas import AccountList, AccountOut, EntryPage, OpenAccountIn, PageArgs
from web.security import current_user

blp = Blueprint("accounts", __name__, url_prefix="/accounts", description="Accounts")


@blp.route("", methods=["GET"])
@jwt_required()
@blp.response(200, AccountList)
@blp.doc(**BEARER)
def list_accounts() -> dict[str, Any]:
    with transaction() as session:
        return {"items": list(accounts.list_owned(session, current_user()))}


@blp.route("", methods=["POST"])
@jwt_required()
@blp.arguments(OpenAccountIn)
@blp.response(201, AccountOut)
@blp.doc(description="At most `MAX_ACCOUNTS_PER_USER` (default 10) open accounts per user; over it `409`.", **BEARER)
def open_account(body: dict[str, Any]) -> Account:
    with transaction() as session:
        return accounts.open_account(
            session, current_user(), body["currency"], request_id(), max_accounts=settings().max_accounts_per_user
        )


@blp.route("/<uuid:account_id>", methods=["GET"])
@jwt_required()
@blp.response(200, AccountOut)
@blp.doc(**BEARER)
def get_account(account_id: uuid.UUID) -> Account:
    with transaction() as session:
        return accounts.get_owned(session, account_id, current_user())


@blp.route("/<uuid:account_id>/entries", methods=["GET"])
@jwt_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, EntryPage)
@blp.doc(**BEARER)
def list_entries(args: dict[str, Any], account_id: uuid.UUID) -> Page[Any]:
    with transaction() as session:
        account = accounts.get_owned(session, account_id, current_user())
        return queries.list_entries(session, account, cursor=args.get("cursor"), limit=args["limit"])
