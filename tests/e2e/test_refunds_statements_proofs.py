"""A refund, a statement and an audit proof end to end: gunicorn API, Celery workers (beat in w1: the
sealer and the webhook relay) and a real webhook receiver."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests import factories
from tests.e2e.conftest import bearer, wait_final
from tests.integration.test_transfer_audit import EXAMPLE, run_readme_check
from tests.receiver import Receiver, running
from tests.waits import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from running()


def accepted(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def test_refund_settles_announces_appears_in_statements_and_proves(  # type: ignore[no-untyped-def]
    http, sessions, settings, admin_user, receiver
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    alice, bob = (factories.customer(sessions, settings) for _ in range(2))
    factories.fund(sessions, admin_user, alice.account, 5000)
    ha, hb = bearer(http, alice.email), bearer(http, bob.email)
    endpoints = {}
    for who, h in (("alice", ha), ("bob", hb)):
        url = receiver.endpoint()
        r = http.post("/webhooks/endpoints", json={"url": url, "events": ["transfer.completed"]}, headers=h)
        assert r.status_code == 201, r.text
        endpoints[who] = (url, r.json()["secret"])

    paid = accepted(
        http.post(
            "/transfers",
            json={
                "source_account_id": str(alice.account.id),
                "destination_account_id": str(bob.account.id),
                "amount": 2000,
                "currency": "USD",
                "pin": factories.PIN,
                "reference": "=order 9",
            },
            headers={**ha, "Idempotency-Key": str(uuid.uuid4())},
        )
    )
    wait_final(sessions, [uuid.UUID(paid["id"])])
    refund = accepted(
        http.post(
            f"/transfers/{paid['id']}/refunds",
            json={"amount": 750, "reason": "returned"},
            headers={**hb, "Idempotency-Key": str(uuid.uuid4())},
        )
    )
    final = wait_final(sessions, [uuid.UUID(refund["id"])])[uuid.UUID(refund["id"])]
    assert final.status.value == "COMPLETED"
    assert http.get(f"/accounts/{alice.account.id}", headers=ha).json()["balance"] == 3750

    # Both owners hear of the refund, signed as any transfer event.
    for url, secret in endpoints.values():
        events = [Webhook(secret).verify(r.body, r.headers) for r in receiver.wait(url, 2)]
        (sent,) = [e for e in events if e["data"]["id"] == refund["id"]]
        assert sent["data"]["kind"] == "REFUND" and sent["data"]["refund_of"] == paid["id"]

    # Alice's statement: the deposit, the payment and the refund; JSON and CSV agree.
    query = {"from": start.isoformat(), "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()}
    body = http.get(f"/accounts/{alice.account.id}/statement", params=query, headers=ha).json()
    assert [e["amount"] for e in body["entries"]] == [5000, -2000, 750]
    assert body["opening_balance"] == 0 and body["closing_balance"] == 3750
    text = http.get(f"/accounts/{alice.account.id}/statement", params=query, headers={**ha, "Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(text.text, newline="")))
    assert [int(r["amount"]) for r in rows] == [5000, -2000, 750]
    assert [r["reference"] for r in rows] == ["test funding", "'=order 9", "returned"]

    # The beat's sealer seals the refund's rows; alice checks them with README's check.
    def proven() -> dict[str, Any] | None:
        audit = http.get(f"/transfers/{refund['id']}/audit", headers=ha).json()
        return audit if audit["items"] and all(i["proof"] is not None for i in audit["items"]) else None

    audit = wait_for("the refund's audit rows sealed with proofs", proven, timeout=30, interval=0.3)
    assert [i["action"] for i in audit["items"]] == ["refund.requested", "transfer.completed"]
    run_readme_check(audit, lambda path: http.get(path, headers=ha).json())
    # README's script as a client runs it, against the live API.
    env = {
        **os.environ,
        "API": str(http.base_url).rstrip("/"),
        "TOKEN": ha["Authorization"].removeprefix("Bearer "),
        "TRANSFER_ID": refund["id"],
    }
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "audit record verified up to root" in run.stdout
