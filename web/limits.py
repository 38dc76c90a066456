"""Rate limits (flask-limiter), counted in Redis so every API process shares them.

Each limit is a setting (``RATE_LIMIT_*``, the ``limits`` syntax: ``"10 per minute"``,
``"5/second;100/hour"``), read per request from the app's settings. A breach is a ``429``
``RATE_LIMITED`` problem with ``Retry-After``. If Redis is unreachable the limiter falls
back to per-process memory instead of failing requests; the lockouts that matter most (PIN,
login) live in Postgres and hold regardless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from core.config import Settings
from core.errors import ValidationFailed
from core.identity.users import normalize_email
from web.context import settings
from web.security import signed_claims


def _login_email() -> str:
    """The account a login is for. Malformed bodies fall back to the client address."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    if isinstance(email, str) and email.strip():
        try:
            return "account:" + normalize_email(email)
        except ValidationFailed:  # the view answers 422; the limiter counts the address
            pass
    return "ip:" + get_remote_address()


def _authenticated_user() -> str:
    """The caller's user id from a token whose signature and expiry are valid, else the client
    address. Verified so that nobody can spend someone else's budget with a forged ``sub``;
    revocation is checked later by the view itself."""
    claims = signed_claims()
    # Any invalid token is the view's 401, not the limiter's: it counts against the address.
    return "user:" + claims["sub"] if claims is not None else "ip:" + get_remote_address()


def _ip() -> str:
    return "ip:" + get_remote_address()


# endpoint -> [(limit from settings, key of the caller it applies to)]
RULES: dict[str, list[tuple[Callable[[Settings], str], Callable[[], str]]]] = {
    "auth.login": [(lambda s: s.rate_limit_login_ip, _ip), (lambda s: s.rate_limit_login_account, _login_email)],
    "auth.verify_otp": [(lambda s: s.rate_limit_otp_verify, _ip)],
    "auth.register": [(lambda s: s.rate_limit_register, _ip)],
    "transfers.create_transfer": [(lambda s: s.rate_limit_transfers, _authenticated_user)],
    "refunds.create_refund": [(lambda s: s.rate_limit_transfers, _authenticated_user)],
    "transfer_batches.create_batch": [(lambda s: s.rate_limit_transfers, _authenticated_user)],
    "webhooks.retry_delivery": [(lambda s: s.rate_limit_webhook_retry, _authenticated_user)],
    # Ending a hold moves (or releases) money too: the same per-user budget, counted per endpoint.
    "transfers.capture_transfer": [(lambda s: s.rate_limit_transfers, _authenticated_user)],
    "transfers.void_transfer": [(lambda s: s.rate_limit_transfers, _authenticated_user)],
}


def init_app(app: Flask) -> Limiter:
    """Attach a limiter of this app's own (tests run several apps with different settings)."""
    s: Settings = app.extensions["bank"].settings
    limiter = Limiter(
        key_func=_ip,
        storage_uri=s.rate_limit_storage_uri,
        storage_options={"socket_timeout": 3, "socket_connect_timeout": 3},
        strategy="moving-window",
        key_prefix=s.rate_limit_key_prefix,
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    for endpoint, rules in RULES.items():
        view: Callable[..., Any] = app.view_functions[endpoint]
        for value, key in rules:
            view = limiter.limit(_setting(value), key_func=key)(view)
        # This app's view only: the limits are checked when it is called, before the view's own work.
        app.view_functions[endpoint] = view
    return limiter


def _setting(value: Callable[[Settings], str]) -> Callable[[], str]:
    return lambda: value(settings())
