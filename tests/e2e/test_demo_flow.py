"""The README demo, as a test: register, KYC, PIN, login, deposit, transfer, poll, balances."""

from __future__ import annotations

import pytest

from devtools.demo import run_demo
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_demo_flow_over_http(api_url, workers, admin_user) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    result = run_demo(api_url, admin_user.email, PASSWORD, say=lines.append)
    assert result.transfer["status"] == "COMPLETED"
    assert result.transfer["failure_code"] is None
    amount = result.transfer["amount"]
    assert (result.alice_balance, result.bob_balance) == (10_000 - amount, amount)
    assert any("Idempotent-Replayed=true" in line for line in lines)
