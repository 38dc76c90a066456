"""/admin: KYC decisions, deposits, freezes, the audit trail. The role is checked on every call."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from flask_smorest import Blueprint

from core import audit
from core.accounts import limit_settings
from core.accounts import service as accounts
from core.identity import kyc, users
from core.models import Account, AuditLog, User
from core.observability import metrics
from core.pagination import Page
from core.transfers.deposit import deposit
from web.context import request_id, transaction
from web.docs import BEARER, IDEMPOTENCY_KEY, doc
from web.schemas import (
    AccountOut,
    AuditListArgs,
    AuditPage,
    BankLimitsIn,
    DepositIn,
    DepositOut,
    KycDecision,
    KycDecisionIn,
    LimitsOut,
    ReasonIn,
    UserListArgs,
    UserOut,
    UserPage,
)
from web.security import admin_required, current_user

blp = Blueprint("admin", __name__, url_prefix="/admin", description="Back-office operations")


@blp.route("/users", methods=["GET"])
@admin_required
@blp.arguments(UserListArgs, location="query")
@blp.response(200, UserPage)
@blp.doc(**BEARER)
def list_users(args: dict[str, Any]) -> Page[User]:
    with transaction() as session:
        return users.list_users(
            session,
            kyc_status=args.get("kyc_status"),
            cursor=args.get("cursor"),
            limit=args["limit"],
        )


@blp.route("/users/<uuid:user_id>/kyc", methods=["POST"])
@admin_required
@blp.arguments(KycDecisionIn)
@blp.response(200, UserOut)
@blp.doc(**BEARER)
def decide_kyc(body: dict[str, Any], user_id: uuid.UUID) -> User:
    with transaction() as session:
        return kyc.decide_kyc(
            session,
            user_id=user_id,
            approve=body["decision"] is KycDecision.APPROVE,
            admin_id=current_user().id,
            reason=body.get("reason"),
            request_id=request_id(),
        )


@blp.route("/accounts/<uuid:account_id>/deposits", methods=["POST"])
@admin_required
@blp.arguments(DepositIn)
@blp.response(201, DepositOut)
@blp.alt_response(200, schema=DepositOut, description="Idempotent replay")
@blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def create_deposit(body: dict[str, Any], account_id: uuid.UUID) -> Any:
    with transaction() as session:
        accepted = deposit(
            session,
            admin_id=current_user().id,
            account_id=account_id,
            amount=body["amount"],
            currency=body["currency"],
            reference=body.get("reference"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            request_id=request_id(),
        )
    if accepted.created:
        metrics.TRANSFERS_ACCEPTED.labels(kind="DEPOSIT").inc()
        metrics.MONEY_MOVED.labels(currency=accepted.transfer.currency, kind="DEPOSIT").inc(accepted.transfer.amount)
        return {"transfer": accepted.transfer}, 201
    return {"transfer": accepted.transfer}, 200, {"Idempotent-Replayed": "true"}


def _freeze(account_id: uuid.UUID, reason: str, frozen: bool) -> Account:
    with transaction() as session:
        return accounts.set_frozen(
            session, account_id, frozen=frozen, admin_id=current_user().id, reason=reason, request_id=request_id()
        )


@blp.route("/accounts/<uuid:account_id>/freeze", methods=["POST"])
@admin_required
@blp.arguments(ReasonIn)
@blp.response(200, AccountOut)
@blp.doc(**BEARER)
def freeze(body: dict[str, Any], account_id: uuid.UUID) -> Account:
    return _freeze(account_id, body["reason"], True)


@blp.route("/accounts/<uuid:account_id>/unfreeze", methods=["POST"])
@admin_required
@blp.arguments(ReasonIn)
@blp.response(200, AccountOut)
@blp.doc(**BEARER)
def unfreeze(body: dict[str, Any], account_id: uuid.UUID) -> Account:
    return _freeze(account_id, body["reason"], False)


@blp.route("/accounts/<uuid:account_id>/limits", methods=["PUT"])
@admin_required
@blp.arguments(BankLimitsIn)
@blp.response(200, LimitsOut)
@blp.doc(
    description="The bank's caps and the credit line (audited with `reason`); a field left out is unchanged, "
    "`null` lifts a cap (or ends the line). Lowering a line below what is drawn leaves the account over its "
    "line: it takes no new debit until it is back within.",
    **BEARER,
)
def put_bank_limits(body: dict[str, Any], account_id: uuid.UUID) -> limit_settings.LimitsView:
    reason = body.pop("reason")
    with transaction() as session:
        account = limit_settings.set_bank_limits(
            session, account_id, body, admin_id=current_user().id, reason=reason, request_id=request_id()
        )
        return limit_settings.view(session, account)


@blp.route("/audit", methods=["GET"])
@admin_required
@blp.arguments(AuditListArgs, location="query")
@blp.response(200, AuditPage)
@blp.doc(**BEARER)
def list_audit(args: dict[str, Any]) -> Page[AuditLog]:
    with transaction() as session:
        return audit.search(
            session,
            entity_id=args.get("entity_id"),
            action=args.get("action"),
            cursor=args.get("cursor"),
            limit=args["limit"],
        )
