"""Rate limits (flask-limiter), counted in Redis so every API process shares them.

Each limit is a setting (``RATE_LIMIT_*``, the ``limits`` syntax: ``"10 per minute"``,
``"5/second;100/hour"``), read per request from the app's settings. A breach is a ``429``
``RATE_LIMITED`` problem with ``Retry-After``. If Redis is unreachable the limiter falls
back to per-process memory instead of failing requests; the lockouts that matter most (PIN,
login) live in Postgres and hold regardless.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request
from flask_limiter import Limit, Limiter
from flask_limiter.util import get_remote_address

from core.config import Settings
from core.errors import ValidationFailed
from core.identity.users import normalize_email
from web import limit_window
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


# The limits, by the caller they count: endpoint -> the setting that holds its limit. Each group
# is one of the limiter's default limits (flask-limiter's ``Limit``, checked before the view), and
# a request to an endpoint it does not list gets no limit from it. Counted per endpoint.
PER_ADDRESS: dict[str, Callable[[Settings], str]] = {
    "auth.login": lambda s: s.rate_limit_login_ip,
    "auth.verify_otp": lambda s: s.rate_limit_otp_verify,
    "auth.register": lambda s: s.rate_limit_register,
    # The operators' console's login takes the same guesses: the same budgets per address.
    "console.login": lambda s: s.rate_limit_login_ip,
    "console.login_otp": lambda s: s.rate_limit_otp_verify,
}
PER_EMAIL: dict[str, Callable[[Settings], str]] = {
    "auth.login": lambda s: s.rate_limit_login_account,
}
PER_USER: dict[str, Callable[[Settings], str]] = {
    "transfers.create_transfer": lambda s: s.rate_limit_transfers,
    "refunds.create_refund": lambda s: s.rate_limit_transfers,
    "transfer_batches.create_batch": lambda s: s.rate_limit_transfers,
    # Ending a hold moves (or releases) money too: the same per-user budget, counted per endpoint.
    "transfers.capture_transfer": lambda s: s.rate_limit_transfers,
    "transfers.void_transfer": lambda s: s.rate_limit_transfers,
    "webhooks.retry_delivery": lambda s: s.rate_limit_webhook_retry,
    "webhooks.replay_events": lambda s: s.rate_limit_webhook_retry,  # up to 10,000 deliveries each
    # A statement reads up to a whole history (JSON and CSV alike): a customer's budget, so that
    # one customer's statements cannot starve everyone's transfers of database time.
    "statements.get_statement": lambda s: s.rate_limit_statements,
}


def init_app(app: Flask) -> Limiter:
    """Attach a limiter of this app's own (tests run several apps with different settings)."""
    s: Settings = app.extensions["bank"].settings
    limiter = Limiter(
        key_func=_ip,
        default_limits=[
            Limit(limit_provider=_limit_of(PER_ADDRESS), key_function=_ip),
            Limit(limit_provider=_limit_of(PER_EMAIL), key_function=_login_email),
            Limit(limit_provider=_limit_of(PER_USER), key_function=_authenticated_user),
        ],
        storage_uri=s.rate_limit_storage_uri,
        storage_options={"socket_timeout": 3, "socket_connect_timeout": 3},
        # The moving window in one Redis round trip, its headers answered from that trip.
        strategy=limit_window.NAME,
        key_prefix=s.rate_limit_key_prefix,
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    return limiter


def _limit_of(limits: dict[str, Callable[[Settings], str]]) -> Callable[[], str]:
    """The limit of the request's endpoint in ``limits``, read from this app's settings; "" (no
    limit) for any other endpoint, and for a CORS preflight, which is not the call it announces."""

    def limit() -> str:
        value = limits.get(request.endpoint or "")
        return value(settings()) if value is not None and request.method != "OPTIONS" else ""

    return limit
