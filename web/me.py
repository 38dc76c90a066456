"""/me: the caller's profile, transaction PIN, password, OTP setting and trusted devices."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.db import database_now
from core.identity import devices, otp_settings, password_change, pin_checks
from core.identity.models import TrustedDevice
from core.identity.pin_checks import PinPolicy
from core.models import User
from web.auth import client_address
from web.context import policies, request_id, transaction
from web.docs import BEARER
from web.schemas import DeviceList, OtpSettingIn, PasswordChangeIn, PinIn, UserOut
from web.security import current_user

blp = Blueprint("me", __name__, url_prefix="/me", description="The caller's profile")


def pin_policy() -> PinPolicy:
    """The app's PIN policy, built once with its resources."""
    return policies().pins


@blp.route("", methods=["GET"])
@jwt_required()
@blp.response(200, UserOut)
@blp.doc(**BEARER)
def profile() -> User:
    return current_user()


@blp.route("/pin", methods=["PUT"])
@jwt_required()
@blp.arguments(PinIn)
@blp.response(204)
@blp.doc(**BEARER)
def put_pin(body: dict[str, Any]) -> None:
    with transaction() as session:
        outcome = pin_checks.set_pin(
            session,
            user_id=current_user().id,
            pin=body["pin"],
            current_pin=body.get("current_pin"),
            policy=pin_policy(),
            now=database_now(session),
            request_id=request_id(),
        )
    outcome.raise_if_failed()  # after commit: the failed attempt counts toward the lockout


@blp.route("/password", methods=["PUT"])
@jwt_required()
@blp.arguments(PasswordChangeIn)
@blp.response(204)
@blp.doc(
    description="Changes the password and revokes every token of the user (log in again). A wrong "
    "`current_password` is `403` and counts toward the login lockout.",
    **BEARER,
)
def put_password(body: dict[str, Any]) -> None:
    with transaction() as session:
        outcome = password_change.change_password(
            session,
            user_id=current_user().id,
            current_password=body["current_password"],
            new_password=body["new_password"],
            client_address=client_address(),
            policy=policies().logins,
            now=database_now(session),
            request_id=request_id(),
        )
    outcome.raise_if_failed()  # after commit: the failed attempt counts toward the lockout


@blp.route("/otp", methods=["POST"])
@jwt_required()
@blp.arguments(OtpSettingIn)
@blp.response(200, UserOut)
@blp.doc(
    description="OTP on: logins from devices not trusted need a one-time code. Turning it off needs "
    "`password` (missing: `422`; wrong: `403`, counted toward the login lockout).",
    **BEARER,
)
def post_otp(body: dict[str, Any]) -> User:
    with transaction() as session:
        user, outcome = otp_settings.set_otp(
            session,
            user_id=current_user().id,
            enabled=body["enabled"],
            password=body.get("password"),
            client_address=client_address(),
            policy=policies().logins,
            now=database_now(session),
            request_id=request_id(),
        )
    outcome.raise_if_failed()  # after commit: the failed attempt counts toward the lockout
    return user


@blp.route("/devices", methods=["GET"])
@jwt_required()
@blp.response(200, DeviceList)
@blp.doc(**BEARER)
def list_devices() -> dict[str, Sequence[TrustedDevice]]:
    with transaction() as session:
        return {"items": devices.list_trusted(session, current_user().id)}


@blp.route("/devices/<uuid:device_id>", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.doc(description="Forget a trusted device: its next login needs an OTP code again.", **BEARER)
def delete_device(device_id: uuid.UUID) -> None:
    with transaction() as session:
        devices.revoke(session, user_id=current_user().id, id=device_id, request_id=request_id())
