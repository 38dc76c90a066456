"""Every error leaves as application/problem+json (RFC 9457) with a stable ``code``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from flask import Flask, Response, json
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from core.db import database_unavailable
from core.errors import DomainError

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    423: "LOCKED",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}
_TITLES = {413: "Payload Too Large", 422: "Unprocessable Entity"}

# What each domain error code means over HTTP: its status and the problem's title. The one
# place core's codes meet HTTP; a code missing here is a bug (tests/unit/test_problems.py).
DOMAIN_STATUSES: dict[str, tuple[int, str]] = {
    "BAD_REQUEST": (400, "Bad Request"),
    "VALIDATION_ERROR": (422, "Unprocessable Entity"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "FORBIDDEN": (403, "Forbidden"),
    "NOT_FOUND": (404, "Not Found"),
    "CONFLICT": (409, "Conflict"),
    "IDEMPOTENCY_KEY_REQUIRED": (400, "Bad Request"),
    "IDEMPOTENCY_KEY_REUSED": (422, "Unprocessable Entity"),
    "INVALID_PIN": (403, "Forbidden"),
    "PIN_LOCKED": (423, "Locked"),
    "PIN_NOT_SET": (409, "Conflict"),
    "KYC_NOT_APPROVED": (403, "Forbidden"),
    "TRANSFER_NOT_HELD": (409, "Conflict"),
    "ACCOUNT_INACTIVE": (409, "Conflict"),
    "CURRENCY_MISMATCH": (422, "Unprocessable Entity"),
    "SAME_ACCOUNT": (422, "Unprocessable Entity"),
    "SERVICE_UNAVAILABLE": (503, "Service Unavailable"),
    "OTP_REQUIRED": (401, "Unauthorized"),
    "INVALID_OTP": (401, "Unauthorized"),
    "RATE_LIMITED": (429, "Too Many Requests"),
    "REFUND_EXCEEDS_AMOUNT": (422, "Unprocessable Entity"),
    "NOT_ACCEPTABLE": (406, "Not Acceptable"),
    "LINKED_FAILED": (424, "Failed Dependency"),
    "LIMIT_EXCEEDED": (422, "Unprocessable Entity"),
    "LIMIT_ABOVE_BANK_CAP": (422, "Unprocessable Entity"),
    "SCHEDULE_INVALID": (422, "Unprocessable Entity"),
    "RECONCILIATION_FILE_INVALID": (422, "Unprocessable Entity"),
}


def domain_status(error: DomainError) -> int:
    """The HTTP status of a domain error (also a batch item's ``status``)."""
    return DOMAIN_STATUSES[error.code][0]


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(status, code, detail, title=title, **extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_body(status: int, code: str, detail: str, *, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """The problem object itself (also nested, e.g. as a batch item's ``error``)."""
    return {
        "type": "about:blank",
        "title": title or _TITLES.get(status) or _title(status),
        "status": status,
        "code": code,
        "detail": detail,
        **{k: v for k, v in extra.items() if v is not None},
    }


def domain_problem_body(error: DomainError) -> dict[str, Any]:
    status, title = DOMAIN_STATUSES[error.code]
    return problem_body(status, error.code, error.detail or title, title=title, **error.extra)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _validation_errors(data: dict[str, Any]) -> dict[str, Any]:
    """webargs nests messages by location ({"json": {...}}); clients want the fields."""
    messages = data.get("messages") or data.get("errors") or {}
    flat: dict[str, Any] = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            flat.update(errors)
        else:
            flat[location if location != "json" else "_body"] = errors
    return flat


def handle_domain_error(error: DomainError) -> Response:
    headers = {}
    retry_after = getattr(error, "retry_after", None)  # core.errors.RateLimited
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    status, title = DOMAIN_STATUSES[error.code]
    return problem(status, error.code, error.detail or title, title=title, headers=headers, **error.extra)


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    if status == 422:
        return problem(422, "VALIDATION_ERROR", "request validation failed", errors=_validation_errors(data))
    if status == 400 and data:
        return problem(400, "BAD_REQUEST", "malformed request body", errors=_validation_errors(data))
    if status >= 500:
        log.error("http_error", status=status)
        return problem(status, "INTERNAL_ERROR", "internal error")
    headers = dict(data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)  # RFC 9110: a 405 names what is allowed
    detail = error.description or _title(status)
    if status == 429:  # flask-limiter: the description is the limit, e.g. "5 per 1 minute"
        detail = f"rate limit exceeded ({detail}); retry after the Retry-After seconds"
    return problem(status, _CODES.get(status, "ERROR"), detail, headers=headers)


def handle_unexpected(error: Exception) -> Response:
    if database_unavailable(error) or isinstance(error, RedisConnectionError | RedisTimeoutError):
        # A dependency is down or restarting: nothing was accepted, the client may retry
        # (with the same Idempotency-Key for money movements).
        log.warning("dependency_unavailable", error_type=type(error).__name__)
        return problem(
            503, "SERVICE_UNAVAILABLE", "a dependency is unavailable; retry later", headers={"Retry-After": "1"}
        )
    log.exception("unhandled_error", error_type=type(error).__name__)
    return problem(500, "INTERNAL_ERROR", "internal error")


def register(app: Flask) -> None:
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
