"""OpenAPI fragments shared by several views."""

from __future__ import annotations

import http
from importlib.resources import files
from typing import Any

from flask import Flask, Response, send_from_directory
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from web.problems import PROBLEM_JSON
from web.schemas import ProblemOut

BEARER: dict[str, Any] = {"security": [{"bearerAuth": []}]}

IDEMPOTENCY_KEY: dict[str, Any] = {
    "parameters": [
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
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
    """flask-smorest's Api with our errors documented as they are: problem+json (RFC 9457)."""

    ERROR_SCHEMA = ProblemOut

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {"description": "Error (application/problem+json)", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)


# Swagger UI from the pinned flask-swagger-ui package (requirements.txt), served by the API:
# /docs loads no third-party script, so nothing unpinned or unhashed runs, and it works offline.
SWAGGER_UI_DIST = str(files("flask_swagger_ui") / "dist")
SWAGGER_UI_ASSETS = "/api/v1/docs/assets/"


def init_swagger_assets(app: Flask) -> None:
    def swagger_ui_asset(filename: str) -> Response:
        return send_from_directory(SWAGGER_UI_DIST, filename, max_age=86400)

    app.add_url_rule(f"{SWAGGER_UI_ASSETS}<path:filename>", "swagger_ui_asset", swagger_ui_asset)
