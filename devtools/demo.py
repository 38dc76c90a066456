"""The user flow, scripted over HTTP: what a new user watches, and what the e2e test runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

Printer = Callable[[str], None]


@dataclass
class DemoResult:
    transfer: dict[str, Any]
    alice_balance: int  # after the transfer
    bob_balance: int
    hold: dict[str, Any]  # as settled: HELD
    alice_while_held: dict[str, Any]  # alice's account while the hold stands
    capture: dict[str, Any]  # the hold once part of it is captured
    refund: dict[str, Any]  # bob's partial refund of the transfer, settled
    batch: list[dict[str, Any]]  # the atomic batch's transfers, settled
    refused_batch: list[dict[str, Any]]  # an atomic batch one item of which cannot be paid, settled
    alice_final: dict[str, Any]  # alice's account at the end
    # The correspondent's statement imported: one inbound credit matched (a deposit to bob), one break.
    reconciliation: dict[str, Any] = field(default_factory=dict)
    # A monthly transfer alice schedules to bob, as shown once its first run is recorded, and that run's transfer.
    schedule: dict[str, Any] = field(default_factory=dict)
    scheduled_transfer: dict[str, Any] = field(default_factory=dict)
    alice_after_schedule: int = 0  # balances once the scheduled run has settled
    bob_after_schedule: int = 0


def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text}"
        )
    return response.json() if response.content else {}


def run_demo(base_url: str, admin_email: str, admin_password: str, say: Printer = print) -> DemoResult:
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=30) as api:
        return _demo(api, admin_email, admin_password, say)


def _demo(api: httpx.Client, admin_email: str, admin_password: str, say: Printer) -> DemoResult:
    run = uuid.uuid4().hex[:8]

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def register(name: str) -> dict[str, Any]:
        body = {
            "email": f"{name}.{run}@example.com",
            "password": "correct horse battery",
            "full_name": name.title(),
        }
        created = _ok(api.post("/auth/register", json=body), 201)
        say(
            f"1. registered {body['email']}: kyc={created['user']['kyc_status']} account={created['account']['status']}"
        )
        return {**created, "password": body["password"]}

    alice, bob = register("alice"), register("bob")

    admin = _ok(api.post("/auth/login", json={"email": admin_email, "password": admin_password}), 200)
    admin_h = bearer(admin["access_token"])
    for who in (alice, bob):
        user = _ok(
            api.post(f"/admin/users/{who['user']['id']}/kyc", json={"decision": "APPROVE"}, headers=admin_h),
            200,
        )
        say(f"2. admin approved KYC of {user['email']}: status={user['status']}")

    tokens = _ok(api.post("/auth/login", json={"email": alice["user"]["email"], "password": alice["password"]}), 200)
    alice_h = bearer(tokens["access_token"])
    say(f"3. alice logged in: {tokens['token_type']} token, expires in {tokens['expires_in']}s")
    _ok(api.put("/me/pin", json={"pin": "2468"}, headers=alice_h), 204)
    me = _ok(api.get("/me", headers=alice_h), 200)
    say(f"4. alice set her PIN: pin_set={me['pin_set']}")

    alice_acc, bob_acc = alice["account"]["id"], bob["account"]["id"]
    dep = _ok(
        api.post(
            f"/admin/accounts/{alice_acc}/deposits",
            json={"amount": 100_00, "currency": "USD", "reference": "demo funding"},
            headers={**admin_h, "Idempotency-Key": f"deposit-{run}"},
        ),
        201,
    )
    say(f"5. admin deposited {dep['transfer']['amount']} minor units into alice's account: {dep['transfer']['status']}")

    key = f"transfer-{run}"
    body = {
        "source_account_id": alice_acc,
        "destination_account_id": bob_acc,
        "amount": 125_50 // 5,
        "currency": "USD",
        "pin": "2468",
        "reference": "dinner",
    }
    accepted = api.post("/transfers", json=body, headers={**alice_h, "Idempotency-Key": key})
    transfer = _ok(accepted, 202)
    say(f"6. transfer accepted: 202 {transfer['status']} Location={accepted.headers['Location']}")
    replay = api.post("/transfers", json=body, headers={**alice_h, "Idempotency-Key": key})
    say(f"   same key again: {replay.status_code} Idempotent-Replayed={replay.headers.get('Idempotent-Replayed')}")

    transfer = _settled(api, transfer, alice_h)
    say(f"7. polled the transfer: {transfer['status']} failure_code={transfer['failure_code']}")

    alice_balance = _ok(api.get(f"/accounts/{alice_acc}", headers=alice_h), 200)["balance"]
    bob_tokens = _ok(api.post("/auth/login", json={"email": bob["user"]["email"], "password": bob["password"]}), 200)
    bob_h = bearer(bob_tokens["access_token"])
    bob_balance = _ok(api.get(f"/accounts/{bob_acc}", headers=bob_h), 200)["balance"]
    entries = _ok(api.get(f"/accounts/{alice_acc}/entries", headers=alice_h), 200)["items"]
    say(
        f"8. balances: alice={alice_balance} bob={bob_balance}; alice's ledger: "
        + ", ".join(f"{e['amount']:+d}→{e['balance_after']}" for e in entries)
    )

    def alice_account() -> dict[str, Any]:
        return _ok(api.get(f"/accounts/{alice_acc}", headers=alice_h), 200)

    # A hold reserves money without moving it; a capture moves part of it and releases the rest.
    hold_body = {**body, "amount": 40_00, "reference": "hotel deposit", "hold": True, "hold_expires_in_seconds": 3600}
    hold = _ok(api.post("/transfers", json=hold_body, headers={**alice_h, "Idempotency-Key": f"hold-{run}"}), 202)
    hold = _settled(api, hold, alice_h)
    while_held = alice_account()
    say(
        f"9. hold of {hold['amount']} for bob: {hold['status']}; alice balance={while_held['balance']}"
        f" available={while_held['available_balance']}"
    )
    capture = _ok(
        api.post(
            f"/transfers/{hold['id']}/capture",
            json={"amount": 30_00},
            headers={**alice_h, "Idempotency-Key": f"capture-{run}"},
        ),
        202,
    )
    capture = _settled(api, capture, alice_h)
    after_capture = alice_account()
    say(
        f"   captured {capture['captured_amount']} of it: {capture['status']}, the rest released; alice"
        f" balance={after_capture['balance']} available={after_capture['available_balance']}"
    )

    # The payee refunds part of a completed transfer: a new REFUND transfer back, settled like any other.
    refund = _ok(
        api.post(
            f"/transfers/{transfer['id']}/refunds",
            json={"amount": 10_00, "reason": "one item returned"},
            headers={**bob_h, "Idempotency-Key": f"refund-{run}"},
        ),
        202,
    )
    refund = _settled(api, refund, bob_h)
    say(
        f"10. bob refunded {refund['amount']} of the {transfer['amount']} transfer: {refund['kind']}"
        f" {refund['status']}, refund_of={refund['refund_of']}; alice balance={alice_account()['balance']}"
    )

    def atomic_batch(name: str, amounts: list[int]) -> list[dict[str, Any]]:
        items = [
            {
                "idempotency_key": f"{name}-{i}-{run}",
                "source_account_id": alice_acc,
                "destination_account_id": bob_acc,
                "amount": amount,
                "currency": "USD",
                "reference": f"{name} {i}",
            }
            for i, amount in enumerate(amounts, 1)
        ]
        answer = _ok(
            api.post("/transfers/batch", json={"pin": "2468", "atomic": True, "items": items}, headers=alice_h), 200
        )
        accepted = [item["transfer"] for item in answer["items"] if item["status"] == 202]
        if len(accepted) != len(items):
            raise RuntimeError(f"batch {name}: not every item was accepted: {answer}")
        return [_settled(api, t, alice_h) for t in accepted]

    # An atomic batch: one request, one PIN; its transfers settle all together or all fail.
    batch = atomic_batch("supplies", [5_00, 7_00])
    say(
        "11. atomic batch of "
        + ", ".join(str(t["amount"]) for t in batch)
        + ": "
        + ", ".join(t["status"] for t in batch)
        + f"; alice balance={alice_account()['balance']}"
    )
    refused = atomic_batch("too-much", [1_00, 1_000_00])
    final = alice_account()
    say(
        "    an atomic batch of "
        + ", ".join(str(t["amount"]) for t in refused)
        + " (more than alice has): "
        + ", ".join(f"{t['status']} {t['failure_code']}" for t in refused)
        + f"; nothing moved, alice balance={final['balance']}"
    )
    reconciliation = _reconciliation(api, admin_h, bob_h, bob_acc, run, say)
    schedule, scheduled = _scheduled_transfer(api, alice_h, {**body, "amount": 15_00, "reference": "pocket money"}, run)
    alice_after, bob_after = (
        alice_account()["balance"],
        _ok(api.get(f"/accounts/{bob_acc}", headers=bob_h), 200)["balance"],
    )
    first = schedule["runs"][0]
    say(
        f"13. alice scheduled {schedule['amount']} to bob monthly ({schedule['rrule']}, {schedule['count']} times),"
        f" first at {schedule['start_at']}: the beat made run {first['occurrence']} transfer {scheduled['id']}"
        f" ({scheduled['status']}, run {first['status']}); next_run_at={schedule['next_run_at']};"
        f" alice balance={alice_after} bob balance={bob_after}"
    )
    return DemoResult(
        transfer,
        alice_balance,
        bob_balance,
        hold,
        while_held,
        capture,
        refund,
        batch,
        refused,
        final,
        reconciliation,
        schedule,
        scheduled,
        alice_after,
        bob_after,
    )


def _scheduled_transfer(
    api: httpx.Client, headers: dict[str, str], transfer: dict[str, Any], run: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A monthly transfer whose first occurrence is due in a couple of seconds (a start in the past is
    refused), waited for until the beat has made its transfer, the transfer has settled and the run is
    recorded: the schedule as it then shows, with its runs, and the run's transfer."""
    start_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    body = {
        **transfer,
        "start_at": start_at.isoformat().replace("+00:00", "Z"),
        "rrule": "FREQ=MONTHLY",
        "count": 3,
        "on_insufficient_funds": "fail",
    }
    created = _ok(
        api.post("/scheduled-transfers", json=body, headers={**headers, "Idempotency-Key": f"schedule-{run}"}), 201
    )
    # The beat's run_schedules makes the transfer at the next tick after start_at; the run takes the
    # transfer's outcome at the tick after it settles (SCHEDULE_INTERVAL_SECONDS apart).
    deadline = time.monotonic() + 90
    while True:
        schedule = _ok(api.get(f"/scheduled-transfers/{created['id']}", headers=headers), 200)
        runs = schedule["runs"]
        if runs and runs[0]["status"] != "PENDING":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"scheduled transfer {created['id']}: no run recorded after 90 s: {schedule}")
        time.sleep(0.5)
    scheduled = _ok(api.get(f"/transfers/{runs[0]['transfer_id']}", headers=headers), 200)
    return schedule, scheduled


def _reconciliation(
    api: httpx.Client, admin_h: dict[str, str], bob_h: dict[str, str], bob_acc: str, run: str, say: Printer
) -> dict[str, Any]:
    """The correspondent bank's statement (CSV): a payer at another bank pays bob, naming his account's
    inbound reference (matched: a deposit), and a credit names nobody (a break for an admin)."""
    inbound = _ok(api.get(f"/accounts/{bob_acc}", headers=bob_h), 200)["inbound_reference"]
    statement = (
        "booking_date,amount,currency,reference,end_to_end_id,counterparty\n"
        f"2026-12-01,2500,USD,CORR-{run}-1 {inbound},,Jane Payer\n"
        f"2026-12-01,1234,USD,CORR-{run}-2 INVOICE 7781,,Somebody Unknown\n"
    )
    imported = _ok(
        api.post("/admin/reconciliations", content=statement, headers={**admin_h, "Content-Type": "text/csv"}), 201
    )
    shown = _ok(api.get(f"/admin/reconciliations/{imported['id']}", headers=admin_h), 200)
    breaks = [i for i in shown["items"] if i["status"] == "UNMATCHED"]
    bob_balance = _ok(api.get(f"/accounts/{bob_acc}", headers=bob_h), 200)["balance"]
    say(
        f"12. statement imported: {imported['lines']} lines, {imported['matched']} matched (a deposit to bob's"
        f" inbound reference {inbound}; bob balance={bob_balance}),"
        f" {imported['unmatched']} break: "
        + ", ".join(f"line {b['line']} {b['amount']} {b['currency']} {b['reference']!r}" for b in breaks)
        + " (resolve it at /console/reconciliations)"
    )
    return shown


def _settled(api: httpx.Client, transfer: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """Poll a transfer until the worker has decided it (it is PENDING until then)."""
    deadline = time.monotonic() + 60
    while transfer["status"] == "PENDING":
        if time.monotonic() > deadline:
            raise RuntimeError(f"transfer {transfer['id']} still {transfer['status']} after 60 s")
        time.sleep(0.2)
        transfer = _ok(api.get(f"/transfers/{transfer['id']}", headers=headers), 200)
    return transfer
