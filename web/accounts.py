"""/accounts: the caller's own accounts and their ledger entries."""

from __future__ import annotations

import uuid
from typing import Any

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.accounts import limit_settings, monitors
from core.accounts import service as accounts
from core.accounts.balance_as_of import BalanceAsOf, balance_as_of
from core.models import Account
from core.pagination import Page
from core.transfers import queries
from web.context import request_id, settings, snapshot, transaction
from web.docs import BEARER
from web.schemas import (
    AccountList,
    AccountOut,
    BalanceAsOfArgs,
    BalanceAsOfOut,
    EntryPage,
    LimitsOut,
    MonitorIn,
    MonitorList,
    MonitorOut,
    OpenAccountIn,
    OwnLimitsIn,
    PageArgs,
)
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
        account = accounts.open_account(
            session, current_user(), body["currency"], request_id(), max_accounts=settings().max_accounts_per_user
        )
        limit_settings.apply_defaults(account, settings().default_limits)
        return account


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


@blp.route("/<uuid:account_id>/limits", methods=["GET"])
@jwt_required()
@blp.response(200, LimitsOut)
@blp.doc(**BEARER)
def get_limits(account_id: uuid.UUID) -> limit_settings.LimitsView:
    with transaction() as session:
        return limit_settings.view(session, accounts.get_readable(session, account_id, current_user()))


@blp.route("/<uuid:account_id>/limits", methods=["PUT"])
@jwt_required()
@blp.arguments(OwnLimitsIn)
@blp.response(200, LimitsOut)
@blp.doc(
    description="The owner's own limits, at or below the bank's caps (`422` `LIMIT_ABOVE_BANK_CAP` above them); "
    "a field left out is unchanged, `null` removes the owner's limit.",
    **BEARER,
)
def put_own_limits(body: dict[str, Any], account_id: uuid.UUID) -> limit_settings.LimitsView:
    with transaction() as session:
        account = limit_settings.set_own_limits(session, account_id, body, user=current_user(), request_id=request_id())
        return limit_settings.view(session, account)


@blp.route("/<uuid:account_id>/balance", methods=["GET"])
@jwt_required()
@blp.arguments(BalanceAsOfArgs, location="query")
@blp.response(200, BalanceAsOfOut)
@blp.doc(
    description="The balance after every ledger entry applied at or before `as_of` (the cut statements make): "
    "0 before the account's first entry, the current balance for an instant after now.",
    **BEARER,
)
def get_balance_as_of(args: dict[str, Any], account_id: uuid.UUID) -> BalanceAsOf:
    with snapshot() as session:  # one snapshot: the cut and the balance probe see the same entries
        account = accounts.get_readable(session, account_id, current_user())
        return balance_as_of(session, account, args["as_of"])


@blp.route("/<uuid:account_id>/monitors", methods=["POST"])
@jwt_required()
@blp.arguments(MonitorIn)
@blp.response(201, MonitorOut)
@blp.doc(
    description="A condition on the account's `balance` or `available_balance`: event `balance.monitor_triggered` "
    f"each time a change takes it from not met to met. At most {monitors.MAX_PER_ACCOUNT} per account.",
    **BEARER,
)
def create_monitor(body: dict[str, Any], account_id: uuid.UUID) -> Any:
    with transaction() as session:
        return monitors.create(session, account_id, current_user(), **body, request_id=request_id())


@blp.route("/<uuid:account_id>/monitors", methods=["GET"])
@jwt_required()
@blp.response(200, MonitorList)
@blp.doc(**BEARER)
def list_monitors(account_id: uuid.UUID) -> dict[str, Any]:
    with transaction() as session:
        return {"items": list(monitors.list_for(session, account_id, current_user()))}


@blp.route("/<uuid:account_id>/monitors/<uuid:monitor_id>", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.doc(**BEARER)
def delete_monitor(account_id: uuid.UUID, monitor_id: uuid.UUID) -> None:
    with transaction() as session:
        monitors.remove(session, account_id, monitor_id, current_user(), request_id())
