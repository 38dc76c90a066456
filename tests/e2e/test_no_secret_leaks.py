"""A full flow over HTTP (gunicorn + Celery workers), then a search by value: no password, PIN, OTP
code, token or webhook secret in any process's logs, in the audit trail, or in a task message."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery.signals import before_task_publish
from sqlalchemy import func, select

from core.config import get_settings
from core.models import AuditLog
from core.transfers import nudges
from core.transfers.routing import partition_of
from tests import factories
from tests.authflow import API, assert_problem, bearer, otp_code
from tests.e2e.conftest import wait_final

pytestmark = pytest.mark.e2e

PASSWORD, NEW_PASSWORD = "first secret passphrase 7Qx!", "second secret passphrase 9Zk!"
PIN, WRONG_PIN = "402913", "864205"


class Secrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        return value

    def found_in(self, text: str) -> list[str]:
        hits = []
        for name, value in self.values.items():
            # Short numeric secrets only count as a whole token (not inside a UUID or a timestamp).
            pattern = rf"(?<![\w.:-]){re.escape(value)}(?![\w])" if value.isdigit() else re.escape(value)
            if re.search(pattern, text):
                hits.append(name)
        return hits


def _flow(http: httpx.Client, sessions, settings, admin_user, secrets: Secrets) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    email = f"leak.{uuid.uuid4().hex[:10]}@example.com"
    secrets.add("password", PASSWORD)
    r = http.post("/auth/register", json={"email": email, "password": PASSWORD, "full_name": "Leak Test"})
    assert r.status_code == 201, r.text
    alice_id, account_id = r.json()["user"]["id"], r.json()["account"]["id"]
    admin_h = bearer(secrets.add("admin token", _login(http, admin_user.email, factories.PASSWORD)["access_token"]))
    assert http.post(f"/admin/users/{alice_id}/kyc", json={"decision": "APPROVE"}, headers=admin_h).status_code == 200
    first = _login(http, email, PASSWORD)
    secrets.add("access token 1", first["access_token"])
    secrets.add("refresh token 1", first["refresh_token"])
    h = bearer(first["access_token"])

    assert http.post("/me/otp", json={"enabled": True}, headers=h).status_code == 200
    r = http.post("/auth/login", json={"email": email, "password": PASSWORD, "device_id": "leak-phone"})
    cid = assert_problem(r, 401, "OTP_REQUIRED")["challenge_id"]
    code = secrets.add("otp code", otp_code(cid))
    r = http.post("/auth/otp/verify", json={"challenge_id": cid, "code": code, "trust_device": True})
    assert r.status_code == 200, r.text
    second = r.json()
    secrets.add("access token 2", second["access_token"])
    secrets.add("refresh token 2", second["refresh_token"])
    h = bearer(second["access_token"])

    secrets.add("pin", PIN)
    secrets.add("wrong pin", WRONG_PIN)
    assert http.put("/me/pin", json={"pin": PIN}, headers=h).status_code == 204
    deposit = http.post(f"/admin/accounts/{account_id}/deposits", json={"amount": 10_000, "currency": "USD"},
                        headers={**admin_h, "Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
    assert deposit.status_code == 201
    if "/api/v1/webhooks/endpoints" in http.get("/openapi.json").json()["paths"]:
        r = http.post("/webhooks/endpoints", json={"url": "http://127.0.0.1:9/leak", "events": ["transfer.completed"]},
                      headers=h)  # fmt: skip
        assert r.status_code == 201, r.text
        secrets.add("webhook secret", r.json()["secret"])
        rotated = http.post(f"/webhooks/endpoints/{r.json()['id']}/rotate-secret", headers=h)
        secrets.add("rotated webhook secret", rotated.json()["secret"])

    bob = factories.customer(sessions, settings)
    body = {"source_account_id": account_id, "destination_account_id": str(bob.account.id), "amount": 2_500,
            "currency": "USD", "pin": WRONG_PIN, "reference": "leak test"}  # fmt: skip
    assert_problem(http.post("/transfers", json=body, headers={**h, "Idempotency-Key": "leak-1"}), 403, "INVALID_PIN")
    r = http.post("/transfers", json={**body, "pin": PIN}, headers={**h, "Idempotency-Key": "leak-2"})
    assert r.status_code == 202, r.text
    assert wait_final(sessions, [uuid.UUID(r.json()["id"])])[uuid.UUID(r.json()["id"])].status.value == "COMPLETED"

    refreshed = http.post("/auth/refresh", headers=bearer(second["refresh_token"])).json()
    secrets.add("access token 3", refreshed["access_token"])
    secrets.add("refresh token 3", refreshed["refresh_token"])
    r = http.put("/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                 headers=bearer(refreshed["access_token"]))  # fmt: skip
    assert r.status_code == 204
    secrets.add("new password", NEW_PASSWORD)
    third = _login(http, email, NEW_PASSWORD, device_id="leak-phone")
    secrets.add("access token 4", third["access_token"])
    assert http.post("/auth/logout", headers=bearer(third["access_token"])).status_code == 204
    secrets.add("JWT_SECRET_KEY", settings.jwt_secret_key.get_secret_value())
    secrets.add("PIN_PEPPER", settings.pin_pepper.get_secret_value())
    return {"email": email, "access_token": third["access_token"], "account_id": account_id, "bob": bob}


def _login(http: httpx.Client, email: str, password: str, **extra: object) -> dict[str, Any]:
    r = http.post("/auth/login", json={"email": email, "password": password, **extra})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_full_flow_leaks_no_secret(  # type: ignore[no-untyped-def]
    http, sessions, settings, admin_user, log_dir: Path, workers, app, redis_client
) -> None:
    with sessions() as s:
        audit_before = s.scalar(select(func.coalesce(func.max(AuditLog.id), 0)))
    secrets = Secrets()
    flow = _flow(http, sessions, settings, admin_user, secrets)

    # Task messages, captured as they are published (in-process app, same code path as the API).
    published: list[dict[str, Any]] = []

    def capture(sender: str, body: Any, headers: dict[str, Any], **_: Any) -> None:
        published.append({"task": sender, "body": body, "headers": headers})

    before_task_publish.connect(capture)
    try:
        client = app.test_client()
        h = bearer(client.post(f"{API}/auth/login", json={"email": flow["email"], "password": NEW_PASSWORD,
                                                          "device_id": "leak-phone"}).json["access_token"])  # fmt: skip
        secrets.add("in-process access token", h["Authorization"].split()[1])
        body = {"source_account_id": flow["account_id"], "destination_account_id": str(flow["bob"].account.id),
                "amount": 100, "currency": "USD", "pin": PIN}  # fmt: skip
        partition = partition_of(uuid.UUID(flow["account_id"]), get_settings().settle_partitions)
        nudges.release_nudge(redis_client, partition)  # no earlier nudge waiting: this one publishes
        r = client.post(f"{API}/transfers", json=body, headers={**h, "Idempotency-Key": "leak-3"})
        assert r.status_code == 202, r.json
    finally:
        before_task_publish.disconnect(capture)
    settle = [m for m in published if m["task"] == "worker.tasks.settle_partition"]
    assert len(settle) == 1
    args, kwargs, _embed = settle[0]["body"]
    assert args == [partition]
    assert kwargs == {}  # a nudge names only a partition: nothing of the request travels
    assert secrets.found_in(json.dumps(published, default=str)) == []

    # Every log line of every process: the session API, both workers (settlement, webhooks).
    time.sleep(0.5)  # let the processes flush the last lines
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(log_dir.rglob("*.log")))
    assert '"otp_sent"' in logs and '"transfer_settled"' in logs  # the logs really cover the flow
    assert secrets.found_in(logs) == []
    # ...and the search would have found them (a PIN as a JSON value, a token anywhere).
    assert secrets.found_in(json.dumps({"pin": PIN, "t": f"Bearer {flow['access_token']}"})) == [
        "pin",
        "access token 4",
    ]

    with sessions() as s:
        rows = s.execute(select(AuditLog).where(AuditLog.id > audit_before)).scalars().all()
        trail = json.dumps([[a.action, a.entity_type, a.entity_id, a.request_id, a.details] for a in rows], default=str)
    assert {"auth.otp_verified", "pin.failed", "password.changed", "auth.logout"} <= {a.action for a in rows}
    assert secrets.found_in(trail) == []
