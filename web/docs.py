"""OpenAPI fragments shared by several views."""

from __future__ import annotations

import http
from importlib.resources import files
from typing import Any

from flask import Flask, Response, send_from_directory
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from web.openapi_spec import ERROR_HEADERS
from web.problems import PROBLEM_JSON
from web.schemas import ProblemOut

BEARER: dict[str, Any] = {"security": [{"bearerAuth": []}]}

IDEMPOTENCY_KEY: dict[str, Any] = {
    "parameters": [
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": True,
            # Printable ASCII without surrounding spaces (HTTP strips them): what validate_key accepts.
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"},
            "description": "Same key and body gives the same transfer; keep it for retries.",
        }
    ]
}


def doc(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


class BankApi(Api):  # type: ignore[misc]  # flask-smorest ships no type hints
    """flask-smorest's Api with our errors documented as they are: problem+json (RFC 9457), each
    status a component with its headers and an example; no catch-all ``default`` response, so a
    client (and schemathesis) sees exactly the statuses an operation can answer (web/openapi_spec.py)."""

    ERROR_SCHEMA = ProblemOut
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_pagination_header(self) -> None:
        """Not ours: lists page with opaque cursors (``next_cursor``), not flask-smorest's page numbers."""

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            if status >= 400:
                headers = ("X-Request-ID", *ERROR_HEADERS.get(status, ()))
                response["headers"] = {name: name for name in headers}
                response["content"][PROBLEM_JSON]["example"] = _problem_example(status)
            self.spec.components.response(status.name, response, lazy=True)


def _problem_example(status: http.HTTPStatus) -> dict[str, Any]:
    code = _EXAMPLE_CODES.get(status, "BAD_REQUEST")
    example: dict[str, Any] = {"type": "about:blank", "title": status.phrase, "status": int(status), "code": code}
    example["detail"] = _EXAMPLE_DETAILS.get(status, status.description or status.phrase)
    if status == 422:
        example["errors"] = {
            "amount": ["Must be greater than or equal to 1 and less than or equal to 9007199254740991."]
        }
    return example


_EXAMPLE_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "ACCOUNT_INACTIVE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    423: "PIN_LOCKED",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}
_EXAMPLE_DETAILS = {
    409: "the source account is FROZEN",
    422: "request validation failed",
    423: "too many wrong PINs; try again later",
    429: "rate limit exceeded (10 per 1 minute); retry after the Retry-After seconds",
}


# Swagger UI from the pinned flask-swagger-ui package (requirements.txt), served by the API:
# /docs loads no third-party script, so nothing unpinned or unhashed runs, and it works offline.
SWAGGER_UI_DIST = str(files("flask_swagger_ui") / "dist")
SWAGGER_UI_ASSETS = "/api/v1/docs/assets/"


def init_swagger_assets(app: Flask) -> None:
    def swagger_ui_asset(filename: str) -> Response:
        return send_from_directory(SWAGGER_UI_DIST, filename, max_age=86400)

    app.add_url_rule(f"{SWAGGER_UI_ASSETS}<path:filename>", "swagger_ui_asset", swagger_ui_asset)
