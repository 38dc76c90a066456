"""The X-Request-ID of the submitting request appears in the worker's log lines for that transfer."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests import factories
from tests.e2e.conftest import bearer, wait_final
from tests.waits import wait_for

pytestmark = pytest.mark.e2e


def test_request_id_follows_the_transfer_into_the_worker(http, sessions, settings, admin_user, workers) -> None:  # type: ignore[no-untyped-def]
    alice, bob = factories.customer(sessions, settings), factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, alice.account, 100)
    rid = f"e2e-{uuid.uuid4()}"
    r = http.post(
        "/transfers",
        json={
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 10,
            "currency": "USD",
            "pin": factories.PIN,
        },
        headers={**bearer(http, alice.email), "Idempotency-Key": "rid", "X-Request-ID": rid},
    )
    assert r.status_code == 202 and r.headers["X-Request-ID"] == rid
    tid = r.json()["id"]
    wait_final(sessions, [uuid.UUID(tid)])

    def worker_lines() -> list[dict[str, Any]]:
        return [json.loads(line) for w in workers for line in w.log().splitlines() if rid in line]

    settled = wait_for(
        "the worker's transfer_settled line",
        lambda: [e for e in worker_lines() if e.get("event") == "transfer_settled"],
        timeout=10,
    )
    assert settled[0]["transfer_id"] == tid and settled[0]["request_id"] == rid
    lines = worker_lines()
    assert factories.PIN not in json.dumps(lines)
