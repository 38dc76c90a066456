"""/auth: register, login, refresh."""

from __future__ import annotations

from typing import Any

from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt_identity, jwt_required
from flask_smorest import Blueprint

from core.errors import Unauthorized
from core.identity import service as identity
from web.context import request_id, settings, transaction
from web.schemas import AccessTokenOut, LoginIn, RegisterIn, RegisterOut, TokensOut

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Registration and login")


@blp.route("/register", methods=["POST"])
@blp.arguments(RegisterIn)
@blp.response(201, RegisterOut)
def register(body: dict[str, Any]) -> dict[str, Any]:
    with transaction() as session:
        user, account = identity.register(session, **body, request_id=request_id())
    return {"user": user, "account": account}


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginIn)
@blp.response(200, TokensOut)
def login(body: dict[str, Any]) -> dict[str, Any]:
    with transaction() as session:
        user = identity.authenticate(session, email=body["email"], password=body["password"], request_id=request_id())
    if user is None:  # raised after commit so the failed attempt stays audited
        raise Unauthorized("invalid email or password")
    return {
        "access_token": create_access_token(identity=str(user.id)),
        "refresh_token": create_refresh_token(identity=str(user.id)),
        "token_type": "Bearer",
        "expires_in": settings().access_token_minutes * 60,
    }


@blp.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
@blp.response(200, AccessTokenOut)
@blp.doc(security=[{"bearerAuth": []}])
def refresh() -> dict[str, Any]:
    return {
        "access_token": create_access_token(identity=get_jwt_identity()),
        "expires_in": settings().access_token_minutes * 60,
    }
