"""The issue's report, replayed with curl against gunicorn: ``curl -d '{"amount":100}'`` without a JSON
Content-Type (curl sends it as a form) captured the whole hold and refunded the whole payment.
Now it is 415 and moves nothing; the same request with the JSON type moves exactly 100."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest

from tests import factories
from tests.e2e.conftest import bearer, wait_final

pytestmark = pytest.mark.e2e


def curl(url: str, token: dict[str, str], *extra: str) -> tuple[int, dict[str, Any]]:
    headers = ["-H", f"Authorization: {token['Authorization']}", "-H", f"Idempotency-Key: {uuid.uuid4()}"]
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "-X", "POST", url, *headers, *extra],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_curl_d_without_a_json_type_moves_nothing(http, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = (factories.customer(sessions, settings) for _ in range(2))
    factories.fund(sessions, admin_user, alice.account, 5_000)
    ha, hb = bearer(http, alice.email), bearer(http, bob.email)
    ids = []
    for hold in (False, True):
        body = {
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 1_000,
            "currency": "USD",
            "pin": factories.PIN,
            "hold": hold,
        }
        r = http.post("/transfers", json=body, headers={**ha, "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    paid, held = ids
    assert {t.status.value for t in wait_final(sessions, map(uuid.UUID, ids)).values()} == {"COMPLETED", "HELD"}
    api = str(http.base_url).rstrip("/")
    capture, refund = f"{api}/transfers/{held}/capture", f"{api}/transfers/{paid}/refunds"

    for url, token in ((capture, ha), (refund, hb)):
        for extra in ((), ("-H", "Content-Type: text/plain")):
            status, problem = curl(url, token, "-d", '{"amount":100}', *extra)
            assert (status, problem["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE"), problem
    assert http.get(f"/transfers/{held}", headers=ha).json()["status"] == "HELD"
    assert http.get(f"/accounts/{alice.account.id}", headers=ha).json()["balance"] == 4_000
    assert http.get(f"/accounts/{bob.account.id}", headers=hb).json()["balance"] == 1_000

    status, captured = curl(capture, ha, "-H", "Content-Type: application/json", "-d", '{"amount":100}')
    assert (status, captured["captured_amount"]) == (202, 100), captured
    status, refunded = curl(refund, hb, "-H", "Content-Type: application/json", "-d", '{"amount":100}')
    assert (status, refunded["amount"]) == (202, 100), refunded
