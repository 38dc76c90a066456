"""JWT auth (flask-jwt-extended): identity is the user id; the role is re-read from the DB."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, Response
from flask_jwt_extended import JWTManager, current_user, verify_jwt_in_request

from core.errors import Forbidden
from core.models import Role, User, UserStatus
from web.context import resources
from web.problems import problem

F = TypeVar("F", bound=Callable[..., Any])

jwt = JWTManager()


def init_app(app: Flask) -> None:
    s = app.extensions["bank"].settings
    app.config.update(
        JWT_SECRET_KEY=s.jwt_secret_key.get_secret_value(),
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # never "none", never a client-chosen algorithm
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=s.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=s.refresh_token_days),
        JWT_ERROR_MESSAGE_KEY="detail",
    )
    jwt.init_app(app)


def _unauthorized(detail: str) -> Response:
    return problem(401, "UNAUTHORIZED", detail, headers={"WWW-Authenticate": "Bearer"})


@jwt.user_lookup_loader
def _load_user(_header: dict[str, Any], payload: dict[str, Any]) -> User | None:
    try:
        user_id = uuid.UUID(payload["sub"])
    except (KeyError, ValueError, TypeError):
        return None
    # A short session of its own: the view's unit of work starts clean after this.
    with resources().sessions() as session:
        user = session.get(User, user_id)
    if user is None or user.status == UserStatus.SUSPENDED:
        return None
    return user


@jwt.user_lookup_error_loader
def _user_gone(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("user no longer exists or is suspended")


@jwt.unauthorized_loader
def _missing(reason: str) -> Response:
    return _unauthorized("missing or malformed Authorization header")


@jwt.invalid_token_loader
def _invalid(reason: str) -> Response:
    return _unauthorized("invalid token")


@jwt.expired_token_loader
def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("token has expired")


@jwt.revoked_token_loader
def _revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("token has been revoked")


@jwt.needs_fresh_token_loader
def _not_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("fresh token required")


@jwt.token_verification_failed_loader
def _claims_failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("invalid token")


def me() -> User:
    return cast(User, current_user)


def admin_required(view: F) -> F:
    """Checks the role from the database on every call: a demoted admin loses access at once."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verify_jwt_in_request()
        if me().role != Role.ADMIN:
            raise Forbidden("admin role required")
        return view(*args, **kwargs)

    return cast(F, wrapper)
