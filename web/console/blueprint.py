"""The console's blueprint and the headers every console answer carries."""

from __future__ import annotations

from flask import Blueprint, Response
from flask_wtf.csrf import generate_csrf

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
