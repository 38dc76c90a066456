"""Helpers for the security tests: problem assertions, logins, OTP codes from the file notifier."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from core.config import Settings
from tests.factories import PASSWORD
from tests.waits import wait_for

PROBLEM = "application/problem+json"
API = "/api/v1"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    """A Flask test response or an httpx response that is a problem+json with this status and code."""
    text = r.get_data(as_text=True) if hasattr(r, "get_data") else r.text
    assert r.status_code == status, text
    assert r.headers["Content-Type"] == PROBLEM, r.headers
    body: dict[str, Any] = json.loads(text)
    assert body["status"] == status and body["code"] == code and body["type"] == "about:blank", body
    assert body["title"] and body["detail"]
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: Any, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return client.post(f"{API}/auth/login", json={"email": email, "password": password, **extra})


def tokens(client: Any, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    r = login(client, email, password, **extra)
    assert r.status_code == 200, r.get_data(as_text=True) if hasattr(r, "get_data") else r.text
    return r.json if hasattr(r, "get_data") else r.json()  # type: ignore[no-any-return]


def otp_file(settings: Settings | None = None) -> Path:
    spec = (settings or Settings()).notifier
    assert spec.startswith("file:"), "the tests deliver OTP codes with NOTIFIER=file:PATH"
    return Path(spec[len("file:") :])


def otp_message(challenge_id: str, settings: Settings | None = None, timeout: float = 10) -> dict[str, Any]:
    """The notifier's line for this challenge (polled: another process may be writing it)."""
    path = otp_file(settings)

    def delivered() -> dict[str, Any] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        return next((m for m in map(json.loads, lines) if m["challenge_id"] == challenge_id), None)

    message: dict[str, Any] = wait_for(f"an OTP for challenge {challenge_id}", delivered, timeout, interval=0.05)
    return message


def otp_code(challenge_id: str, settings: Settings | None = None) -> str:
    return str(otp_message(challenge_id, settings)["code"])


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a JWT, unverified (what anyone holding the token can read)."""
    header, payload, _ = token.split(".")
    return _b64json(header), _b64json(payload)


def _b64json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
