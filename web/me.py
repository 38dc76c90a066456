"""/me: the caller's profile and transaction PIN."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.identity import service as identity
from core.identity.service import PinPolicy
from core.models import User
from web.context import request_id, settings, transaction
from web.docs import BEARER
from web.schemas import PinIn, UserOut
from web.security import me

blp = Blueprint("me", __name__, url_prefix="/me", description="The caller's profile")


def pin_policy() -> PinPolicy:
    s = settings()
    return PinPolicy(
        pepper=s.pin_pepper.get_secret_value().encode(),
        max_attempts=s.pin_max_attempts,
        lock_for=timedelta(minutes=s.pin_lock_minutes),
    )


@blp.route("", methods=["GET"])
@jwt_required()
@blp.response(200, UserOut)
@blp.doc(**BEARER)
def profile() -> User:
    return me()


@blp.route("/pin", methods=["PUT"])
@jwt_required()
@blp.arguments(PinIn)
@blp.response(204)
@blp.doc(**BEARER)
def put_pin(body: dict[str, Any]) -> None:
    with transaction() as session:
        outcome = identity.set_pin(
            session,
            user_id=me().id,
            pin=body["pin"],
            current_pin=body.get("current_pin"),
            policy=pin_policy(),
            now=datetime.now(UTC),
            request_id=request_id(),
        )
    outcome.raise_if_failed()  # after commit: the failed attempt counts toward the lockout
