"""The Python client (clients/python) against the real server and workers: a transfer, a wait, an
iteration, metadata, the events feed followed, a webhook verified, errors as their types, token
refresh, and a retry after a dropped connection that does not make a second transfer."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.models import Transfer as TransferRow
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))

from bank_sdk import BankClient, RetryPolicy, errors, verify_webhook  # noqa: E402

pytestmark = pytest.mark.e2e


class DropsFirstAnswer(httpx.BaseTransport):
    """Forwards every request; the first POST /transfers reaches the server (which commits it),
    then its answer is lost as if the connection dropped."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.dropped = 0
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/transfers"):
            self.keys.append(request.headers["Idempotency-Key"])
            if not self.dropped:
                self.dropped += 1
                response.close()
                raise httpx.ReadError("connection dropped before the answer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def pair(sessions, settings, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = factories.customer(sessions, settings), factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, alice.account, 10_000)
    return alice, bob


def test_transfer_wait_iterate_and_follow(api_url, workers, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    with BankClient(f"{api_url}/api/v1") as bank:
        bank.login(alice.email, factories.PASSWORD)
        start = bank.events.page(limit=1)  # where the feed is now, about
        order = f"A-{uuid.uuid4().hex[:6]}"
        t = bank.transfers.create(
            source_account_id=str(alice.account.id),
            destination_account_id=str(bob.account.id),
            amount=250,
            currency="USD",
            pin=factories.PIN,
            metadata={"order_id": order},
        )
        assert t.status == "PENDING" and t.metadata == {"order_id": order}
        done = bank.transfers.wait(t.id, timeout=30)
        assert done.status == "COMPLETED" and done.completed_at is not None
        assert [x.id for x in bank.transfers.list(metadata={"order_id": order})] == [t.id]
        assert t.id in {x.id for x in bank.transfers.list(page_size=1)}  # pages followed
        seen: list[Any] = []
        for event in bank.events.follow(types=["transfer.completed"], after=start["next_cursor"], idle_timeout=12):
            seen.append(event)
            if event.data["id"] == t.id:
                break
        assert seen and seen[-1].data["id"] == t.id and seen[-1].data["metadata"] == {"order_id": order}
        with pytest.raises(errors.InvalidPin) as refused:
            bank.transfers.create(
                source_account_id=str(alice.account.id), destination_account_id=str(bob.account.id),
                amount=1, currency="USD", pin="0000" if factories.PIN != "0000" else "9999",
            )  # fmt: skip
        assert refused.value.status == 403 and refused.value.problem["code"] == "INVALID_PIN"
        with pytest.raises(errors.NotFound):
            bank.transfers.get(str(uuid.uuid4()))


def test_a_retry_after_a_dropped_connection_makes_no_second_transfer(api_url, workers, pair, sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    transport = DropsFirstAnswer()
    policy = RetryPolicy(max_attempts=3, base_delay=0.05)
    with BankClient(f"{api_url}/api/v1", transport=transport, retry=policy) as bank:
        bank.login(alice.email, factories.PASSWORD)
        t = bank.transfers.create(
            source_account_id=str(alice.account.id),
            destination_account_id=str(bob.account.id),
            amount=100,
            currency="USD",
            pin=factories.PIN,
            reference="dropped once",
        )
    assert transport.dropped == 1 and len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
    with sessions() as s:
        made = s.scalar(
            select(func.count()).where(
                TransferRow.initiated_by == alice.user.id, TransferRow.reference == "dropped once"
            )
        )
    assert made == 1
    assert t.reference == "dropped once"


def test_a_4xx_is_not_retried_and_a_dead_server_is_bounded() -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if request.url.path.endswith("/transfers/x"):
            return httpx.Response(404, json={"code": "NOT_FOUND", "status": 404, "detail": "no"})
        return httpx.Response(503, headers={"Retry-After": "0"}, json={"code": "SERVICE_UNAVAILABLE", "status": 503})

    bank = BankClient("http://bank.invalid/api/v1", access_token="t", transport=httpx.MockTransport(answer),
                      retry=RetryPolicy(max_attempts=4, base_delay=0.01))  # fmt: skip
    with bank:
        with pytest.raises(errors.NotFound):
            bank.transfers.get("x")
        assert len(calls) == 1
        calls.clear()
        with pytest.raises(errors.ServiceUnavailable):
            bank.transfers.get("y")
        assert len(calls) == 4


def test_token_refresh_and_webhook_verification() -> None:
    from standardwebhooks import Webhook

    tokens = {"access": "old"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/refresh"):
            tokens["access"] = "new"
            return httpx.Response(200, json={"access_token": "new", "expires_in": 900})
        if request.headers["Authorization"] != f"Bearer {tokens['access']}" or tokens["access"] == "old":
            return httpx.Response(401, json={"code": "UNAUTHORIZED", "status": 401})
        return httpx.Response(200, json={"items": []})

    bank = BankClient("http://bank.invalid/api/v1", access_token="old", transport=httpx.MockTransport(answer))
    bank.refresh_token = "refresh"
    with bank:
        assert bank.accounts.list() == []
    assert bank.access_token == "new"

    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"type":"transfer.completed","timestamp":"2026-01-01T00:00:00+00:00","data":{"id":"t"}}'
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    assert verify_webhook(secret, body, headers)["data"] == {"id": "t"}
    with pytest.raises(Exception, match=r"(?i)signature"):
        verify_webhook(secret, body.replace('"t"', '"u"'), headers)


def test_the_client_example_runs(api_url, workers, pair) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    alice, bob = pair
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "clients" / "python" / "src"),
        "BANK_API": f"{api_url}/api/v1",
        "BANK_EMAIL": alice.email,
        "BANK_PASSWORD": factories.PASSWORD,
        "BANK_PIN": factories.PIN,
    }
    script = ROOT / "examples" / "client_transfer.py"
    done = subprocess.run(
        [sys.executable, str(script), str(alice.account.id), str(bob.account.id), "125"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": COMPLETED" in done.stdout and "found by metadata" in done.stdout and "True" in done.stdout
    assert "transfer.completed" in done.stdout
