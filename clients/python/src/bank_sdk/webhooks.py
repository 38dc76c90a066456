"""Webhook signatures (Standard Webhooks), verified with the ``standardwebhooks`` library."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook


def verify_webhook(secret: str, body: bytes | str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The payload ``{type, timestamp, data}`` of a delivery whose signature and timestamp (at
    most 5 minutes off) check out; ``standardwebhooks.WebhookVerificationError`` otherwise.
    Dedupe by ``headers["webhook-id"]``: deliveries are at least once."""
    raw = body.decode() if isinstance(body, bytes) else body
    wanted = {k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")}
    Webhook(secret).verify(raw, wanted)
    payload: dict[str, Any] = json.loads(raw)
    return payload
