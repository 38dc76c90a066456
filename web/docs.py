"""OpenAPI fragments shared by several views."""

from __future__ import annotations

from typing import Any

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
