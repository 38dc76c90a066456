"""The demo (`./run.sh demo`), as a test: register, KYC, PIN, login, deposit, transfer, poll, balances,
then a hold partly captured, a partial refund, atomic batches, a statement reconciled and a scheduled
transfer's first run made by the beat, all over HTTP."""

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

    # The hold reserves 40.00 without moving it; 30.00 is captured and the other 10.00 released.
    assert (result.hold["status"], result.hold["hold"], result.hold["amount"]) == ("HELD", True, 4_000)
    held = result.alice_while_held
    assert (held["balance"], held["available_balance"]) == (10_000 - amount, 10_000 - amount - 4_000)
    assert (result.capture["id"], result.capture["status"]) == (result.hold["id"], "COMPLETED")
    assert result.capture["captured_amount"] == 3_000

    refund = result.refund
    assert (refund["kind"], refund["status"], refund["amount"]) == ("REFUND", "COMPLETED", 1_000)
    assert refund["refund_of"] == result.transfer["id"]

    assert [(t["status"], t["amount"]) for t in result.batch] == [("COMPLETED", 500), ("COMPLETED", 700)]
    assert len({t["batch_id"] for t in result.batch}) == 1 and result.batch[0]["batch_id"] is not None
    # All or nothing: the item alice could pay fails with the one she could not.
    assert [(t["status"], t["failure_code"]) for t in result.refused_batch] == [
        ("FAILED", "LINKED_FAILED"),
        ("FAILED", "INSUFFICIENT_FUNDS"),
    ]

    final = 10_000 - amount - 3_000 + 1_000 - 500 - 700
    assert (result.alice_final["balance"], result.alice_final["available_balance"]) == (final, final)
    # The statement: bob's inbound credit matched (a deposit), the other line the one break.
    rec = result.reconciliation
    assert (rec["lines"], rec["matched"], rec["unmatched"]) == (2, 1, 1)
    assert [(i["status"], (i["matched_to"] or {}).get("kind")) for i in rec["items"]] == [
        ("MATCHED", "DEPOSIT"),
        ("UNMATCHED", None),
    ]
    # The scheduled transfer: the beat made its first occurrence one ordinary transfer, settled, and
    # recorded the run; the monthly schedule goes on to its next occurrence.
    schedule, scheduled = result.schedule, result.scheduled_transfer
    assert (schedule["status"], schedule["rrule"], schedule["count"]) == ("ACTIVE", "FREQ=MONTHLY", 3)
    assert [(r["status"], r["transfer_id"]) for r in schedule["runs"]] == [("COMPLETED", scheduled["id"])]
    assert schedule["runs"][0]["occurrence"] == schedule["start_at"]
    assert schedule["next_run_at"] is not None and schedule["next_run_at"] > schedule["start_at"]
    assert (scheduled["status"], scheduled["failure_code"], scheduled["amount"]) == ("COMPLETED", None, 1_500)
    assert (scheduled["source_account_id"], scheduled["destination_account_id"]) == (
        result.transfer["source_account_id"],
        result.transfer["destination_account_id"],
    )
    # Every cent accounted for: bob got the transfer, the capture, less his refund, the batch and the
    # statement's deposit (25.00), then the scheduled run; alice paid all of it from her 100.00.
    assert result.alice_after_schedule == final - 1_500
    assert result.bob_after_schedule == amount + 3_000 - 1_000 + 500 + 700 + 2_500 + 1_500
    for step in (
        "9. hold",
        "captured 3000",
        "10. bob refunded 1000",
        "11. atomic batch",
        "nothing moved",
        "12. statement",
        "13. alice scheduled 1500",
    ):
        assert any(step in line for line in lines), (step, lines)
