"""The newer sections of API.md, driven over HTTP exactly as a client that reads only API.md would:
spend controls, scheduled transfers, metadata, statements and audit proofs, webhooks, the events
feed, external money, the console and operations. Bad input is a 4xx problem+json, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.authflow import API, PROBLEM, assert_problem, bearer, tokens
from tests.factories import PIN, fund

BAD_INSTANTS = [
    "2026-13-01T00:00:00Z",  # month 13: the form, not a date
    "2026-02-30T00:00:00Z",
    "2026-01-01T25:00:00Z",
    "2026-01-01T00:00:00",  # no offset
    "2026-01-01 00:00:00Z",
    "2026-01-01",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "2026-01-01T00:00:00+24:00",
    "x",
]


@pytest.fixture
def alice_bob(client, make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100_000)
    return (
        alice,
        bob,
        bearer(tokens(client, alice.email)["access_token"]),
        bearer(tokens(client, bob.email)["access_token"]),
    )


@pytest.fixture
def admin_h(client, admin_user):  # type: ignore[no-untyped-def]
    return bearer(tokens(client, admin_user.email)["access_token"])


def key(h: dict[str, str]) -> dict[str, str]:
    return {**h, "Idempotency-Key": str(uuid.uuid4())}


# ---- spend controls -----------------------------------------------------------------------------


def test_limits_shape_and_scoping(client, alice_bob, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, bh = alice_bob
    r = client.get(f"{API}/accounts/{alice.account.id}/limits", headers=ah)
    assert r.status_code == 200, r.json
    assert set(r.json) >= {
        "account_id", "currency", "credit_limit", "per_transfer", "daily_outgoing", "monthly_outgoing",
        "used_today", "used_this_month", "bank_caps",
    }  # fmt: skip
    assert set(r.json["bank_caps"]) == {"per_transfer", "daily_outgoing", "monthly_outgoing"}
    assert_problem(client.get(f"{API}/accounts/{alice.account.id}/limits", headers=bh), 404, "NOT_FOUND")
    assert_problem(client.put(f"{API}/accounts/{alice.account.id}/limits", json={}, headers=bh), 404, "NOT_FOUND")
    assert_problem(client.get(f"{API}/accounts/{uuid.uuid4()}/limits", headers=ah), 404, "NOT_FOUND")
    assert_problem(client.get(f"{API}/accounts/not-a-uuid/limits", headers=ah), 404, "NOT_FOUND")


@pytest.mark.parametrize("value", [-1, 1.5, "100", True, 2**53, 10**30, {"a": 1}])
def test_own_and_bank_limits_refuse_bad_numbers(client, alice_bob, admin_h, value) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, _ = alice_bob
    url = f"{API}/accounts/{alice.account.id}/limits"
    assert_problem(client.put(url, json={"per_transfer": value}, headers=ah), 422, "VALIDATION_ERROR")
    admin_url = f"{API}/admin/accounts/{alice.account.id}/limits"
    body = {"credit_limit": value, "reason": "r"}
    assert_problem(client.put(admin_url, json=body, headers=admin_h), 422, "VALIDATION_ERROR")


def test_limits_set_by_bank_and_owner(client, alice_bob, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, _ = alice_bob
    admin_url = f"{API}/admin/accounts/{alice.account.id}/limits"
    assert_problem(client.put(admin_url, json={"per_transfer": 5}, headers=admin_h), 422, "VALIDATION_ERROR")
    assert_problem(client.put(admin_url, json={"per_transfer": 5, "reason": "r"}, headers=ah), 403, "FORBIDDEN")
    assert_problem(
        client.put(f"{API}/admin/accounts/{uuid.uuid4()}/limits", json={"reason": "r"}, headers=admin_h),
        404,
        "NOT_FOUND",
    )
    r = client.put(admin_url, json={"per_transfer": 5_000, "credit_limit": 300, "reason": "r"}, headers=admin_h)
    assert r.status_code == 200, r.json
    assert r.json["per_transfer"] == 5_000 and r.json["credit_limit"] == 300
    assert r.json["bank_caps"]["per_transfer"] == 5_000
    url = f"{API}/accounts/{alice.account.id}/limits"
    assert_problem(client.put(url, json={"per_transfer": 5_001}, headers=ah), 422, "LIMIT_ABOVE_BANK_CAP")
    assert_problem(client.put(url, json={"credit_limit": 1}, headers=ah), 422, "VALIDATION_ERROR")
    r = client.put(url, json={"per_transfer": 4_000}, headers=ah)
    assert r.status_code == 200 and r.json["per_transfer"] == 4_000 and r.json["bank_caps"]["per_transfer"] == 5_000
    assert client.put(url, headers=ah).status_code == 200  # an empty body is {}
    account = client.get(f"{API}/accounts/{alice.account.id}", headers=ah).json
    assert account["credit_limit"] == 300 and account["available_balance"] == account["balance"] + 300
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(alice_bob[1].account.id),
        "amount": 4_001,
        "currency": "USD",
        "pin": PIN,
    }
    assert_problem(client.post(f"{API}/transfers", json=body, headers=key(ah)), 422, "LIMIT_EXCEEDED")


@pytest.mark.parametrize("as_of", BAD_INSTANTS)
def test_balance_as_of_refuses_bad_instants(client, alice_bob, as_of) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, _ = alice_bob
    r = client.get(f"{API}/accounts/{alice.account.id}/balance", query_string={"as_of": as_of}, headers=ah)
    assert_problem(r, 422, "VALIDATION_ERROR")


def test_balance_as_of(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, bh = alice_bob
    url = f"{API}/accounts/{alice.account.id}/balance"
    assert_problem(client.get(url, headers=ah), 422, "VALIDATION_ERROR")
    r = client.get(url, query_string={"as_of": "2000-01-01T00:00:00Z"}, headers=ah)
    assert r.status_code == 200 and r.json["balance"] == 0, r.json
    assert set(r.json) == {"account_id", "currency", "as_of", "balance"}
    r = client.get(url, query_string={"as_of": "2999-01-01T00:00:00+05:00"}, headers=ah)
    assert r.status_code == 200 and r.json["balance"] == 100_000, r.json
    assert_problem(client.get(url, query_string={"as_of": "2000-01-01T00:00:00Z"}, headers=bh), 404, "NOT_FOUND")


def test_monitors(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, bh = alice_bob
    url = f"{API}/accounts/{alice.account.id}/monitors"
    good = {"field": "balance", "operator": "lt", "value": 100}
    for bad in (
        {**good, "field": "credit"},
        {**good, "operator": "eq"},
        {**good, "value": 1.5},
        {**good, "value": "1"},
        {**good, "value": 2**63},
        {**good, "extra": 1},
        {"field": "balance"},
    ):
        assert_problem(client.post(url, json=bad, headers=ah), 422, "VALIDATION_ERROR")
    assert_problem(client.post(url, json=good, headers=bh), 404, "NOT_FOUND")
    r = client.post(url, json={**good, "value": -5}, headers=ah)
    assert r.status_code == 201, r.json
    assert set(r.json) == {
        "id", "account_id", "field", "operator", "value", "description", "created_at", "last_triggered_at",
    }  # fmt: skip
    assert r.json["value"] == -5 and r.json["last_triggered_at"] is None
    first = r.json["id"]
    for _ in range(19):
        assert client.post(url, json=good, headers=ah).status_code == 201
    assert_problem(client.post(url, json=good, headers=ah), 422, "VALIDATION_ERROR")
    listed = client.get(url, headers=ah)
    assert listed.status_code == 200 and len(listed.json["items"]) == 20
    assert_problem(client.get(url, headers=bh), 404, "NOT_FOUND")
    assert_problem(client.delete(f"{url}/{first}", headers=bh), 404, "NOT_FOUND")
    assert client.delete(f"{url}/{first}", headers=ah).status_code == 204
    assert_problem(client.delete(f"{url}/{first}", headers=ah), 404, "NOT_FOUND")
    assert_problem(client.delete(f"{url}/{uuid.uuid4()}", headers=ah), 404, "NOT_FOUND")


# ---- scheduled transfers ------------------------------------------------------------------------


def schedule_body(alice, bob, **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 1_000,
        "currency": "USD",
        "pin": PIN,
        "start_at": "2030-01-01T09:30:00Z",
        "rrule": "FREQ=MONTHLY;BYMONTHDAY=1",
        "count": 3,
        "on_insufficient_funds": "skip",
    }
    body.update(over)
    return body


def test_scheduled_transfer_lifecycle(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, bh = alice_bob
    url = f"{API}/scheduled-transfers"
    body = schedule_body(alice, bob, metadata={"k": "v"})
    assert_problem(client.post(url, json=body, headers=ah), 400, "IDEMPOTENCY_KEY_REQUIRED")
    h = key(ah)
    r = client.post(url, json=body, headers=h)
    assert r.status_code == 201, r.json
    created = r.json
    assert created["status"] == "ACTIVE" and created["next_run_at"].startswith("2030-01-01T09:30:00")
    assert created["metadata"] == {"k": "v"} and "pin" not in created and created["created_at"]
    again = client.post(url, json=body, headers=h)
    assert again.status_code == 200 and again.json["id"] == created["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert_problem(client.post(url, json={**body, "amount": 2}, headers=h), 422, "IDEMPOTENCY_KEY_REUSED")
    one = f"{url}/{created['id']}"
    got = client.get(one, headers=ah)
    assert got.status_code == 200 and got.json["runs"] == [] and got.json["id"] == created["id"]
    assert_problem(client.get(one, headers=bh), 404, "NOT_FOUND")
    assert_problem(client.post(f"{one}/pause", headers=bh), 404, "NOT_FOUND")
    assert_problem(client.get(f"{url}/{uuid.uuid4()}", headers=ah), 404, "NOT_FOUND")
    listed = client.get(url, headers=ah)
    assert listed.status_code == 200 and [s["id"] for s in listed.json["items"]] == [created["id"]]
    assert "next_cursor" in listed.json
    assert client.get(url, headers=bh).json["items"] == []
    paused = client.post(f"{one}/pause", headers=ah)
    assert paused.status_code == 200 and paused.json["status"] == "PAUSED"
    resumed = client.post(f"{one}/resume", headers=ah)
    assert resumed.status_code == 200 and resumed.json["status"] == "ACTIVE"
    cancelled = client.post(f"{one}/cancel", headers=ah)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "CANCELLED"
    assert_problem(client.post(f"{one}/resume", headers=ah), 409, "CONFLICT")


@pytest.mark.parametrize(
    "over",
    [
        {"start_at": "2001-01-01T00:00:00Z"},
        {"start_at": "2099-01-01T00:00:00Z"},
        {"rrule": "FREQ=MINUTELY", "count": None},
        {"rrule": "FREQ=HOURLY", "count": None},
        {"rrule": "FREQ=SOMETIMES"},
        {"rrule": "not a rule"},
        {"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "count": None},
        {"rrule": "FREQ=DAILY;DTSTART=20300101T000000Z", "count": None},
        {"until": "2029-01-01T00:00:00Z", "count": None},
    ],
)
def test_a_bad_schedule_is_schedule_invalid(client, alice_bob, over) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, _ = alice_bob
    body = {k: v for k, v in schedule_body(alice, bob, **over).items() if v is not None}
    assert_problem(client.post(f"{API}/scheduled-transfers", json=body, headers=key(ah)), 422, "SCHEDULE_INVALID")


@pytest.mark.parametrize(
    "over",
    [
        {"on_insufficient_funds": "FAIL"},
        {"on_insufficient_funds": None},
        {"amount": 0},
        {"amount": 2**53},
        {"amount": 10.0},
        {"count": 0},
        {"count": 1.5},
        {"count": 10**20},
        {"start_at": "2030-01-01"},
        {"start_at": "9999-12-31T23:59:59-01:00"},
        {"until": "yesterday"},
        {"rrule": 5},
        {"source_account_id": "nope"},
        {"extra": 1},
        {"metadata": {"k": 1}},
        {"metadata": []},
    ],
)
def test_a_malformed_schedule_is_validation_error(client, alice_bob, over) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, _ = alice_bob
    body = schedule_body(alice, bob, **over)
    if over.get("on_insufficient_funds", "") is None:
        del body["on_insufficient_funds"]
    assert_problem(client.post(f"{API}/scheduled-transfers", json=body, headers=key(ah)), 422, "VALIDATION_ERROR")


def test_a_schedule_from_someone_elses_account_is_refused(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, bh = alice_bob
    r = client.post(f"{API}/scheduled-transfers", json=schedule_body(alice, bob), headers=key(bh))
    assert r.status_code in (403, 404), r.json
    assert r.headers["Content-Type"] == PROBLEM
    r = client.post(f"{API}/scheduled-transfers", json=schedule_body(alice, bob, pin="9999"), headers=key(ah))
    assert_problem(r, 403, "INVALID_PIN")


# ---- metadata -----------------------------------------------------------------------------------


def test_metadata_on_accounts_and_transfers(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, bh = alice_bob
    url = f"{API}/accounts/{alice.account.id}"
    r = client.patch(url, json={"metadata": {"team": "ops"}}, headers=ah)
    assert r.status_code == 200 and r.json["metadata"] == {"team": "ops"}, r.json
    assert client.get(url, headers=ah).json["metadata"] == {"team": "ops"}
    assert_problem(client.patch(url, json={"metadata": {"a": "b"}}, headers=bh), 404, "NOT_FOUND")
    too_many = {f"k{i}": "v" for i in range(21)}
    e = assert_problem(client.patch(url, json={"metadata": too_many}, headers=ah), 422, "VALIDATION_ERROR")
    assert "metadata" in e["errors"]
    e = assert_problem(client.patch(url, json={"metadata": {"x" * 41: "v"}}, headers=ah), 422, "VALIDATION_ERROR")
    assert "x" * 41 in str(e["errors"])
    e = assert_problem(client.patch(url, json={"metadata": {"long": "v" * 501}}, headers=ah), 422, "VALIDATION_ERROR")
    assert "long" in str(e["errors"])
    e = assert_problem(client.patch(url, json={"metadata": {"n": 1}}, headers=ah), 422, "VALIDATION_ERROR")
    assert "n" in e["errors"].get("metadata", {})
    assert_problem(client.patch(url, json={}, headers=ah), 422, "VALIDATION_ERROR")
    assert_problem(client.patch(url, json={"metadata": {}, "currency": "EUR"}, headers=ah), 422, "VALIDATION_ERROR")
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 100,
        "currency": "USD",
        "pin": PIN,
        "metadata": {"order": "A-1"},
    }
    t = client.post(f"{API}/transfers", json=body, headers=key(ah))
    assert t.status_code == 202 and t.json["metadata"] == {"order": "A-1"}, t.json
    other = client.post(f"{API}/transfers", json={**body, "metadata": {"order": "B"}}, headers=key(ah))
    assert other.status_code == 202
    found = client.get(f"{API}/transfers", query_string={"metadata[order]": "A-1"}, headers=ah)
    assert found.status_code == 200 and [x["id"] for x in found.json["items"]] == [t.json["id"]]
    payee_view = client.get(f"{API}/transfers", query_string={"metadata[order]": "A-1"}, headers=bh)
    assert [x["id"] for x in payee_view.json["items"]] == [t.json["id"]]  # the payee sees the metadata too
    long_key = client.get(f"{API}/transfers", query_string={"metadata[" + "x" * 41 + "]": "v"}, headers=ah)
    assert_problem(long_key, 422, "VALIDATION_ERROR")
    batch = {
        "pin": PIN,
        "items": [
            {
                "idempotency_key": str(uuid.uuid4()),
                "source_account_id": str(alice.account.id),
                "destination_account_id": str(bob.account.id),
                "amount": 1,
                "currency": "USD",
                "metadata": {"b": "1"},
            }
        ],
    }
    r = client.post(f"{API}/transfers/batch", json=batch, headers=ah)
    assert r.status_code == 200 and r.json["items"][0]["transfer"]["metadata"] == {"b": "1"}, r.json


def test_out_of_range_instants_are_422_everywhere(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    """An instant of the right form outside the years 1-9999 in UTC is a 422, never a 500."""
    alice, bob, ah, _ = alice_bob
    for instant in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        for over in ({"start_at": instant}, {"until": instant}):
            r = client.post(f"{API}/scheduled-transfers", json=schedule_body(alice, bob, **over), headers=key(ah))
            e = assert_problem(r, 422, "VALIDATION_ERROR")
            assert list(e["errors"]) == list(over), e
        endpoint = client.post(
            f"{API}/webhooks/endpoints",
            json={"url": "http://127.0.0.1:9/x", "events": ["transfer.completed"]},
            headers=ah,
        ).json["id"]
        for body in ({"from": instant, "to": "2030-01-01T00:00:00Z"}, {"from": "2030-01-01T00:00:00Z", "to": instant}):
            r = client.post(f"{API}/webhooks/endpoints/{endpoint}/replay", json=body, headers=ah)
            assert_problem(r, 422, "VALIDATION_ERROR")
        r = client.get(
            f"{API}/accounts/{alice.account.id}/statement", query_string={"from": instant, "to": instant}, headers=ah
        )
        assert_problem(r, 422, "VALIDATION_ERROR")
    # The last instant of 9999 in UTC is a date like any other.
    r = client.post(
        f"{API}/scheduled-transfers",
        json=schedule_body(alice, bob, count=None, until="9999-12-31T23:59:59Z"),
        headers=key(ah),
    )
    assert r.status_code == 201, r.json


# ---- statements and audit proofs ----------------------------------------------------------------


def test_statement_shape_and_refusals(client, alice_bob, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, bh = alice_bob
    url = f"{API}/accounts/{alice.account.id}/statement"
    period = {"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}
    r = client.get(url, query_string=period, headers=ah)
    assert r.status_code == 200, r.json
    assert set(r.json) == {"account_id", "currency", "from", "to", "opening_balance", "closing_balance", "entries"}
    assert r.json["opening_balance"] == 0 and r.json["closing_balance"] == 100_000
    assert [e["amount"] for e in r.json["entries"]] == [100_000]
    assert set(r.json["entries"][0]) >= {"id", "transfer_id", "amount", "balance_after", "created_at"}
    c = client.get(url, query_string=period, headers={**ah, "Accept": "text/csv"})
    assert c.status_code == 200 and c.mimetype == "text/csv"
    lines = c.get_data(as_text=True).splitlines()
    assert lines[0] == "created_at,transfer_id,amount,balance_after,reference" and len(lines) == 2
    assert client.get(url, query_string=period, headers=admin_h).status_code == 200
    assert_problem(client.get(url, query_string=period, headers=bh), 404, "NOT_FOUND")
    for bad in (
        {},
        {"from": period["from"]},
        {"to": period["to"]},
        {**period, "extra": "1"},
        {**period, "cursor": "garbage"},
        {"from": period["to"], "to": period["from"]},
        {"from": "2020-01-01", "to": "2021-01-01"},
    ):
        assert_problem(client.get(url, query_string=bad, headers=ah), 422, "VALIDATION_ERROR")
    r = client.get(url, query_string=period, headers={**ah, "Accept": "text/html"})
    assert r.status_code == 406 and r.headers["Content-Type"] == PROBLEM


def test_audit_roots_and_proofs_refusals(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, bh = alice_bob
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 100,
        "currency": "USD",
        "pin": PIN,
    }
    t = client.post(f"{API}/transfers", json=body, headers=key(ah)).json["id"]
    r = client.get(f"{API}/transfers/{t}/audit", headers=ah)
    assert r.status_code == 200 and r.json["items"], r.json
    item = r.json["items"][0]
    assert set(item) >= {"seq", "action", "occurred_at", "details", "row_hash"}
    assert client.get(f"{API}/transfers/{t}/audit", headers=bh).status_code == 200  # the payee sees it too
    assert_problem(client.get(f"{API}/transfers/{uuid.uuid4()}/audit", headers=ah), 404, "NOT_FOUND")
    latest = client.get(f"{API}/audit/roots/latest", headers=ah)
    assert latest.status_code in (200, 404)
    if latest.status_code == 200:
        assert set(latest.json) >= {"n", "root", "previous_root", "sealed_at"}
        n = latest.json["n"]
        assert client.get(f"{API}/audit/roots/{n}", headers=ah).json == latest.json
    for n in ("99999999", "9" * 30, "-1", "abc", "0"):
        r = client.get(f"{API}/audit/roots/{n}", headers=ah)
        assert r.status_code == 404 and r.headers["Content-Type"] == PROBLEM, (n, r.status_code)
    assert_problem(client.get(f"{API}/audit/roots/latest"), 401, "UNAUTHORIZED")


def test_another_customers_transfer_audit_is_404(client, make_customer, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, _ = alice_bob
    carol = make_customer()
    ch = bearer(tokens(client, carol.email)["access_token"])
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 100,
        "currency": "USD",
        "pin": PIN,
    }
    t = client.post(f"{API}/transfers", json=body, headers=key(ah)).json["id"]
    assert_problem(client.get(f"{API}/transfers/{t}/audit", headers=ch), 404, "NOT_FOUND")


# ---- webhooks and the events feed ---------------------------------------------------------------

HOOK = "http://127.0.0.1:9/discard"


def test_webhook_endpoints_over_http(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    _, _, ah, bh = alice_bob
    url = f"{API}/webhooks/endpoints"
    r = client.post(
        url, json={"url": HOOK, "events": ["transfer.completed", "payout.sent"], "description": "d"}, headers=ah
    )
    assert r.status_code == 201 and r.json["secret"].startswith("whsec_"), r.json
    one = f"{url}/{r.json['id']}"
    for path in ("", "/deliveries"):
        assert_problem(client.get(one + path, headers=bh), 404, "NOT_FOUND")
    assert_problem(client.post(f"{one}/rotate-secret", headers=bh), 404, "NOT_FOUND")
    assert_problem(client.delete(one, headers=bh), 404, "NOT_FOUND")
    replay = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    assert_problem(client.post(f"{one}/replay", json=replay, headers=bh), 404, "NOT_FOUND")
    d = client.get(f"{one}/deliveries", headers=ah)
    assert d.status_code == 200 and d.json["items"] == []
    assert_problem(client.get(f"{one}/deliveries", query_string={"cursor": "x"}, headers=ah), 422, "VALIDATION_ERROR")
    assert_problem(client.post(f"{API}/webhooks/deliveries/{uuid.uuid4()}/retry", headers=ah), 404, "NOT_FOUND")
    for bad in (
        {"from": replay["to"], "to": replay["from"]},
        {**replay, "types": ["transfer.exploded"]},
        {**replay, "types": "transfer.completed"},
        {**replay, "extra": 1},
        {"from": replay["from"]},
        {"from": "2026-01-01", "to": "2026-01-02"},
    ):
        assert_problem(client.post(f"{one}/replay", json=bad, headers=ah), 422, "VALIDATION_ERROR")
    assert client.delete(one, headers=ah).status_code == 204
    assert_problem(client.get(one, headers=ah), 404, "NOT_FOUND")


def test_events_feed_refusals(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    _, _, ah, _ = alice_bob
    r = client.get(f"{API}/events", headers=ah)
    assert r.status_code == 200 and "next_cursor" in r.json and r.json["next_cursor"], r.json
    empty = client.get(f"{API}/events", query_string={"after": r.json["next_cursor"]}, headers=ah)
    assert empty.status_code == 200 and empty.json["next_cursor"], empty.json
    assert client.get(f"{API}/events", query_string={"limit": 500}, headers=ah).status_code == 200
    for bad in (
        {"limit": 501},
        {"limit": 0},
        {"limit": "x"},
        {"limit": 10**30},
        {"types": "transfer.exploded"},
        {"types": "transfer.completed,"},
        {"types": ""},
        {"after": "garbage"},
        {"after": "9" * 40},
    ):
        assert_problem(client.get(f"{API}/events", query_string=bad, headers=ah), 422, "VALIDATION_ERROR")
    ok = client.get(f"{API}/events", query_string={"types": "transfer.completed,account.credited"}, headers=ah)
    assert ok.status_code == 200


# ---- bodies a view takes no field of -----------------------------------------------------------


def test_unknown_fields_are_422_where_a_request_takes_no_body(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    """API.md "Errors": unknown fields are rejected (422), also by an action that takes none."""
    alice, bob, ah, _ = alice_bob
    created = client.post(f"{API}/scheduled-transfers", json=schedule_body(alice, bob), headers=key(ah)).json
    hook = client.post(
        f"{API}/webhooks/endpoints", json={"url": HOOK, "events": ["transfer.completed"]}, headers=ah
    ).json
    for path in (
        f"/scheduled-transfers/{created['id']}/pause",
        f"/scheduled-transfers/{created['id']}/resume",
        f"/scheduled-transfers/{created['id']}/cancel",
        f"/webhooks/endpoints/{hook['id']}/rotate-secret",
    ):
        r = client.post(API + path, json={"unexpected": True}, headers=ah)
        assert_problem(r, 422, "VALIDATION_ERROR")
    assert client.get(f"{API}/scheduled-transfers/{created['id']}", headers=ah).json["status"] == "ACTIVE"
    assert client.post(f"{API}/webhooks/endpoints/{hook['id']}/rotate-secret", json={}, headers=ah).status_code == 200
    assert client.post(f"{API}/scheduled-transfers/{created['id']}/pause", headers=ah).status_code == 200
    assert_problem(
        client.delete(f"{API}/webhooks/endpoints/{hook['id']}", json={"x": 1}, headers=ah), 422, "VALIDATION_ERROR"
    )
    assert client.get(f"{API}/webhooks/endpoints/{hook['id']}", headers=ah).status_code == 200
    assert_problem(client.post(f"{API}/auth/logout", json={"everywhere": True}, headers=ah), 422, "VALIDATION_ERROR")
    assert client.get(f"{API}/me", headers=ah).status_code == 200  # the token still works


# ---- external money -----------------------------------------------------------------------------


def test_counterparties_payouts_and_files_refusals(client, alice_bob, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice, _, ah, bh = alice_bob
    cp = client.post(
        f"{API}/counterparties",
        json={"name": "Vendor", "account_number": "123456789", "routing_number": "021000021", "currency": "USD"},
        headers=ah,
    )
    assert cp.status_code == 201, cp.json
    assert set(cp.json) >= {"id", "name", "account_number_last4", "currency", "created_at"}
    assert "account_number" not in cp.json
    assert_problem(client.get(f"{API}/counterparties/{cp.json['id']}", headers=bh), 404, "NOT_FOUND")
    for bad in (
        {"name": "V", "account_number": "123456789", "currency": "USD"},
        {"name": "V", "iban": 12345, "currency": "EUR"},
        {"name": "V", "iban": "DE89370400440532013000"},
        {"name": "", "iban": "DE89370400440532013000", "currency": "EUR"},
        {"name": "V", "iban": "DE89370400440532013000", "currency": "EUR", "bic": "X"},
    ):
        assert_problem(client.post(f"{API}/counterparties", json=bad, headers=ah), 422, "VALIDATION_ERROR")
    payout = {
        "source_account_id": str(alice.account.id),
        "counterparty_id": cp.json["id"],
        "amount": 500,
        "currency": "USD",
        "pin": PIN,
    }
    assert_problem(client.post(f"{API}/payouts", json=payout, headers=ah), 400, "IDEMPOTENCY_KEY_REQUIRED")
    for over in ({"amount": 0}, {"amount": 1.5}, {"amount": 2**53}, {"counterparty_id": "x"}, {"extra": 1}):
        assert_problem(client.post(f"{API}/payouts", json={**payout, **over}, headers=key(ah)), 422, "VALIDATION_ERROR")
    r = client.post(f"{API}/payouts", json={**payout, "counterparty_id": str(uuid.uuid4())}, headers=key(ah))
    assert r.status_code == 404 and r.headers["Content-Type"] == PROBLEM, r.json
    r = client.post(f"{API}/payouts", json=payout, headers=key(ah))
    assert r.status_code == 202 and r.json["status"] == "PENDING", r.json
    assert set(r.json) >= {"id", "transfer_id", "status", "end_to_end_id"}
    assert r.headers["Location"].endswith(f"/payouts/{r.json['id']}")
    assert_problem(client.get(f"{API}/payouts/{r.json['id']}", headers=bh), 404, "NOT_FOUND")
    assert client.get(f"{API}/payouts/{r.json['id']}", headers=admin_h).status_code == 200
    listed = client.get(f"{API}/payouts", headers=ah)
    assert listed.status_code == 200 and r.json["id"] in [p["id"] for p in listed.json["items"]]
    assert_problem(client.post(f"{API}/admin/payout-files", json={"currency": "USD"}, headers=ah), 403, "FORBIDDEN")
    assert_problem(
        client.post(f"{API}/admin/payout-files", json={"currency": "XXX"}, headers=admin_h), 422, "VALIDATION_ERROR"
    )
    assert_problem(client.get(f"{API}/admin/payout-files/{uuid.uuid4()}", headers=admin_h), 404, "NOT_FOUND")
    # Its transfer is still PENDING (no worker here): nothing whose money has left the customer.
    assert_problem(client.post(f"{API}/admin/payout-files", json={"currency": "IDR"}, headers=admin_h), 409, "CONFLICT")


def test_reconciliation_refusals(client, admin_h) -> None:  # type: ignore[no-untyped-def]
    url = f"{API}/admin/reconciliations"
    assert_problem(client.get(f"{url}/{uuid.uuid4()}", headers=admin_h), 404, "NOT_FOUND")
    for line in ("1", "99999999999999999999"):
        r = client.post(
            f"{url}/{uuid.uuid4()}/lines/{line}/resolve", json={"action": "ignore", "reason": "x"}, headers=admin_h
        )
        assert_problem(r, 404, "NOT_FOUND")
    bad_csv = b"booking_date,amount,currency,reference,end_to_end_id,counterparty\n2026-13-01,100,USD,r,,x\n"
    r = client.post(url, data=bad_csv, headers={**admin_h, "Content-Type": "text/csv"})
    assert_problem(r, 422, "RECONCILIATION_FILE_INVALID")
    r = client.post(url, data=b"{}", headers={**admin_h, "Content-Type": "application/json"})
    assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")


# ---- operations ---------------------------------------------------------------------------------


def test_operations_endpoints_and_request_ids(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/healthz", "/readyz", f"{API}/healthz", f"{API}/readyz"):
        r = client.get(path)
        assert r.status_code == 200 and r.json["status"] == "ok", path
        assert r.headers["X-Request-ID"]
    for path in ("/openapi.json", f"{API}/openapi.json"):
        r = client.get(path)
        assert r.status_code == 200 and r.json["openapi"].startswith("3"), path
    for path in ("/docs", f"{API}/docs"):
        assert client.get(path).status_code == 200, path
    r = client.get("/healthz", headers={"X-Request-ID": "client-id-42"})
    assert r.headers["X-Request-ID"] == "client-id-42"
    r = client.get(f"{API}/me", headers={"X-Request-ID": "client-id-43"})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == "client-id-43"
    r = client.get(f"{API}/nowhere", headers={"X-Request-ID": "client-id-44"})
    assert_problem(r, 404, "NOT_FOUND")
    assert r.headers["X-Request-ID"] == "client-id-44"


def test_a_schedule_is_checked_as_a_transfer_would_be(client, make_customer, alice_bob) -> None:  # type: ignore[no-untyped-def]
    alice, bob, ah, _ = alice_bob
    euro = make_customer(currency="EUR")
    url = f"{API}/scheduled-transfers"
    same = schedule_body(alice, alice)
    assert_problem(client.post(url, json=same, headers=key(ah)), 422, "SAME_ACCOUNT")
    # A destination in another currency answers as POST /transfers does: the one 404 of every
    # destination that cannot receive (core/transfers/submit.py: no oracle on others' accounts).
    other = schedule_body(alice, euro)
    assert_problem(client.post(url, json=other, headers=key(ah)), 404, "NOT_FOUND")
    wrong = schedule_body(alice, bob, currency="EUR")
    assert_problem(client.post(url, json=wrong, headers=key(ah)), 422, "CURRENCY_MISMATCH")
    nowhere = {**schedule_body(alice, bob), "destination_account_id": str(uuid.uuid4())}
    assert_problem(client.post(url, json=nowhere, headers=key(ah)), 404, "NOT_FOUND")


def test_list_parameters_are_checked(client, alice_bob) -> None:  # type: ignore[no-untyped-def]
    _, _, ah, _ = alice_bob
    for path in ("/scheduled-transfers", "/payouts", "/counterparties", "/transfers"):
        for bad in ({"limit": 0}, {"limit": 101}, {"limit": "1.5"}, {"limit": 10**30}, {"cursor": "garbage"}):
            assert_problem(client.get(API + path, query_string=bad, headers=ah), 422, "VALIDATION_ERROR")
    too_many = {f"metadata[k{i}]": "v" for i in range(21)}
    e = assert_problem(client.get(f"{API}/transfers", query_string=too_many, headers=ah), 422, "VALIDATION_ERROR")
    assert "metadata" in e["errors"]
    r = client.get(f"{API}/transfers", query_string={"metadata[k]": ""}, headers=ah)
    assert r.status_code == 200 and r.json["items"] == []
