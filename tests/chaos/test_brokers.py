"""The README's user flow end to end on each broker (Redis by default, RabbitMQ in production)."""

from __future__ import annotations

import pytest

from devtools.demo import run_demo
from tests.factories import PASSWORD

pytestmark = pytest.mark.chaos


def test_demo_flow_on_this_broker(running, admin_user) -> None:  # type: ignore[no-untyped-def]
    result = run_demo(running.api_url, admin_user.email, PASSWORD, say=lambda _: None)
    assert result.transfer["status"] == "COMPLETED"
    amount = result.transfer["amount"]
    assert (result.alice_balance, result.bob_balance) == (10_000 - amount, amount)
    # The settlement really went through this cluster's workers, on this broker.
    assert result.transfer["id"] in running.worker_logs()
