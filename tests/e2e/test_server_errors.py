"""Errors gunicorn answers itself, before the app sees the request, are problem+json too."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("request_kw", "status", "code"),
    [
        ({"url": "/api/v1/health?q=" + "a" * 5000}, 414, "URI_TOO_LONG"),
        ({"url": "/api/v1/health", "headers": {"x-big": "b" * 9000}}, 431, "REQUEST_HEADERS_TOO_LARGE"),
        ({"url": "/api/v1/health", "headers": {f"x-h{i}": "v" for i in range(120)}}, 431, "REQUEST_HEADERS_TOO_LARGE"),
    ],
)
def test_requests_gunicorn_refuses_get_problem_json(api_url: str, request_kw: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    with httpx.Client(base_url=api_url, timeout=10) as client:
        r = client.get(**request_kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["status"], body["code"]) == (status, code)
    assert "aaaa" not in r.text and "bbbb" not in r.text  # the refused request is not echoed
