"""gunicorn's own error answers as application/problem+json, like every answer of the app.

gunicorn refuses some requests before the app sees them (a request line over
``limit_request_line``, too many or too large headers, a malformed request line) and writes a
fixed HTML page for them. :func:`install` replaces that writer in a gunicorn worker process.
The detail never echoes the refused request: it may carry a token in its query string.
"""

from __future__ import annotations

import json
import socket
from http import HTTPStatus

_CODES = {
    400: "BAD_REQUEST",
    403: "FORBIDDEN",
    414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "REQUEST_HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
}
_DETAILS = {
    414: "The request line is too long (at most 4094 bytes): send large values in a JSON body.",
    431: "The request headers are too many or too large.",
}


def problem_body(status: int, reason: str = "") -> bytes:
    """The problem+json body of a refusal before the app (also web/request_limits.py's)."""
    title = reason or HTTPStatus(status).phrase
    return json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "code": _CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"),
            "detail": _DETAILS.get(status, f"{title}: the server refused the request before reading it."),
        }
    ).encode()


def problem_response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 response (closing the connection) with a problem+json body."""
    title = reason or HTTPStatus(status).phrase
    body = problem_body(status, reason)
    head = (
        f"HTTP/1.1 {status} {title}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (``mesg`` is not sent: it quotes the request)."""
    from gunicorn import util

    util.write_nonblock(sock, problem_response(status_int, reason))


def install() -> None:
    """Make this gunicorn process answer its own errors as problem+json (called after fork)."""
    from gunicorn import util

    util.write_error = write_problem
