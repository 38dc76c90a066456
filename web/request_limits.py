"""The request line and header limits gunicorn enforces, enforced by the app whatever serves it.

gunicorn refuses a request line over 4094 bytes (414), more than 100 header fields or one over 8190
bytes (431) before the app sees them, and answers as problem+json (web/server_errors.py). granian
has no such limits (its only bound is a 400 KiB read buffer), so under it this WSGI middleware
gives the same answers; under gunicorn it never fires (gunicorn refused first). The answer never
echoes the refused request: a query string may carry a token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from web.server_errors import problem_body

MAX_REQUEST_LINE = 4094  # gunicorn's limit_request_line
MAX_HEADER_FIELDS = 100  # limit_request_fields
MAX_HEADER_FIELD = 8190  # limit_request_field_size

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def refusal(environ: Environ) -> int | None:
    """414 or 431 when the request is over a limit, else None."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if target is None:
        query = environ.get("QUERY_STRING", "")
        target = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") + ("?" + query if query else "")
    line = len(environ.get("REQUEST_METHOD", "")) + len(str(target)) + len(environ.get("SERVER_PROTOCOL", "")) + 2
    if line > MAX_REQUEST_LINE:
        return 414
    fields = 0
    for key, value in environ.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            fields += 1
            if len(key) + 2 + len(str(value)) > MAX_HEADER_FIELD:
                return 431
    return 431 if fields > MAX_HEADER_FIELDS else None


class RequestLimits:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        status = refusal(environ)
        if status is None:
            return self.app(environ, start_response)
        body = problem_body(status)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))],
        )
        return [body]
