"""The console's blueprint and the headers every console answer carries."""

from __future__ import annotations

from http import HTTPStatus

from flask import Blueprint, Response, render_template
from flask_wtf.csrf import generate_csrf
from werkzeug.exceptions import HTTPException

from core.errors import DomainError
from web import problems

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# No inline script or style anywhere (CSS and JS are files under static/), nothing from another
# origin, forms post only here, and no page may frame the console.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@bp.context_processor
def _csrf_token() -> dict[str, object]:
    # What CSRFProtect would add app-wide; the console's forms only (the API takes bearer tokens).
    return {"csrf_token": generate_csrf}


@bp.after_request
def _console_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"  # pages show customers' data
    return response


@bp.errorhandler(Exception)
def _error_page(error: Exception) -> tuple[str, int, dict[str, str]]:
    """The API's answer to the same error (web/problems.py decides the status, logs, and says what
    may be shown), as a page. A 500 says only that something went wrong: never a trace."""
    if isinstance(error, DomainError):
        answer = problems.handle_domain_error(error)
    elif isinstance(error, HTTPException):
        answer = problems.handle_http_exception(error)
    else:
        answer = problems.handle_unexpected(error)
    status = answer.status_code
    body = answer.get_json(silent=True) or {}
    message = str(body.get("detail") or "") if status < 500 else "Something went wrong on our side; try again later."
    headers = {k: v for k, v in answer.headers.items() if k in ("Retry-After", "Allow")}
    page = render_template("console/error.html", title=HTTPStatus(status).phrase, message=message)
    return page, status, headers
