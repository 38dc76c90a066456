"""/auth: register, login (OTP for untrusted devices), OTP verification, refresh, logout."""

from __future__ import annotations

from typing import Any

import structlog
from flask import request
from flask_jwt_extended import get_jwt, jwt_required
from flask_smorest import Blueprint

from core import audit
from core.accounts.limit_settings import apply_defaults
from core.db import database_now
from core.errors import OtpRequired, Unauthorized
from core.identity import login as logins
from core.identity import otp, users
from core.identity import tokens as revocations
from core.models import User
from core.notifications import OtpMessage, make_notifier
from web.context import policies, request_id, resources, settings, transaction
from web.docs import BEARER
from web.schemas import LoginIn, OtpVerifyIn, RegisterIn, RegisterOut, TokensOut
from web.security import current_user, family_expiry, issue_tokens, revoke_current, token_expiry

log = structlog.get_logger(__name__)

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Registration and login")


def client_address() -> str:
    """The caller's address (ProxyFix has applied TRUSTED_PROXY_HOPS): half of a lockout key."""
    return request.remote_addr or "unknown"


@blp.route("/register", methods=["POST"])
@blp.arguments(RegisterIn)
@blp.response(201, RegisterOut)
def register(body: dict[str, Any]) -> dict[str, Any]:
    with transaction() as session:
        user, account = users.register(session, **body, request_id=request_id())
        apply_defaults(account, settings().default_limits)
    return {"user": user, "account": account}


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginIn)
@blp.response(200, TokensOut)
@blp.doc(
    description="With OTP on and an untrusted (or no) `device_id`: `401` `OTP_REQUIRED` with `challenge_id`. "
    "Too many failures lock the email for a while: `429` `RATE_LIMITED` with `Retry-After`."
)
def login(body: dict[str, Any]) -> dict[str, Any]:
    with transaction() as session:
        result = logins.authenticate(
            session,
            email=body["email"],
            password=body["password"],
            device_id=body.get("device_id"),
            client_address=client_address(),
            policy=policies().logins,
            now=database_now(session),
            request_id=request_id(),
        )
    user = result.raise_if_failed()  # after commit: the failure counter and audit row stay
    if result.otp_required:
        challenge_id = _send_challenge(user, body.get("device_id"))
        raise OtpRequired("a one-time code was sent; answer it at /auth/otp/verify", challenge_id=challenge_id)
    return issue_tokens(user)


def _send_challenge(user: User, device_id: str | None) -> str:
    challenge, code = otp.issue(
        resources().redis, policies().otp, challenge_id=otp.new_challenge_id(), user_id=user.id, device_id=device_id
    )
    make_notifier(settings().notifier).send_otp(
        OtpMessage(user_id=user.id, email=user.email, purpose=challenge.purpose, code=code, challenge_id=challenge.id)
    )
    return challenge.id


@blp.route("/otp/verify", methods=["POST"])
@blp.arguments(OtpVerifyIn)
@blp.response(200, TokensOut)
@blp.doc(
    description="Answer an `OTP_REQUIRED` challenge. `trust_device: true` trusts the `device_id` sent at login "
    "(ignored if none was). A wrong code is `401` `INVALID_OTP`; 5 wrong codes or the TTL end the challenge. "
    "Wrong codes count toward the login lockout; while the email is locked every answer is `429` `RATE_LIMITED`."
)
def verify_otp(body: dict[str, Any]) -> dict[str, Any]:
    with transaction() as session:
        result = logins.answer_otp(
            session,
            resources().redis,
            policies().otp,
            challenge_id=body["challenge_id"],
            code=body["code"],
            trust_device=body["trust_device"],
            client_address=client_address(),
            policy=policies().logins,
            now=database_now(session),
            request_id=request_id(),
        )
    return issue_tokens(result.raise_if_failed())  # after commit: the failed attempt counts toward the lockout


@blp.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
@blp.response(200, TokensOut)
@blp.doc(
    description="Rotation: answers a new access token *and* a new refresh token; the one sent is spent. "
    "Sending a spent refresh token again revokes every token of that login (theft detection).",
    **BEARER,
)
def refresh() -> dict[str, Any]:
    payload = get_jwt()
    with transaction() as session:
        now = database_now(session)
        fresh = revocations.spend_refresh(
            session,
            jti=payload["jti"],
            family=payload["fam"],
            user_id=current_user().id,
            expires_at=token_expiry(payload),
            family_expires_at=family_expiry(now),
            now=now,
            request_id=request_id(),
        )
    if fresh:  # after commit: the spent refresh token is recorded before new tokens exist
        return issue_tokens(current_user(), family=payload["fam"])
    log.warning("refresh_token_reused", user_id=str(current_user().id))
    raise Unauthorized("refresh token already used; every token of this login is now revoked")


@blp.route("/logout", methods=["POST"])
@jwt_required()
@blp.response(204)
@blp.doc(description="Revokes this access token and the refresh tokens of its login.", **BEARER)
def logout() -> None:
    with transaction() as session:
        revoke_current(session, get_jwt())
        audit.record(
            session,
            action="auth.logout",
            entity_type="user",
            entity_id=current_user().id,
            actor_id=current_user().id,
            request_id=request_id(),
        )
