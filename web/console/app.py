"""Wiring: the blueprint and its session cookie."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import Flask

from web.console import reconciliations, views  # noqa: F401  (importing them registers the routes on bp)
from web.console.auth import IDLE_TIMEOUT
from web.console.blueprint import bp


def session_secret(jwt_secret: str) -> str:
    """The console's cookie-signing key, derived from the JWT key (one secret to configure and rotate)
    but never equal to it: a session cookie can never pass for a token, nor the reverse."""
    return hashlib.sha256(b"bank-console-session:v1:" + jwt_secret.encode()).hexdigest()


def init_app(app: Flask) -> None:
    s = app.extensions["bank"].settings
    app.config.update(
        SECRET_KEY=session_secret(s.jwt_secret_key.get_secret_value()),
        # A rotation (JWT_PREVIOUS_SECRET_KEY) keeps sessions signed before it, as it keeps tokens.
        SECRET_KEY_FALLBACKS=[session_secret(k.get_secret_value()) for k in [s.jwt_previous_secret_key] if k],
        SESSION_COOKIE_NAME="bank_console",
        SESSION_COOKIE_PATH="/console",  # the API never sees it
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=s.app_env not in ("development", "test"),
        PERMANENT_SESSION_LIFETIME=IDLE_TIMEOUT,
        SESSION_REFRESH_EACH_REQUEST=True,
        WTF_CSRF_TIME_LIMIT=int(timedelta(hours=1).total_seconds()),
    )
    app.register_blueprint(bp)
