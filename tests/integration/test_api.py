"""The HTTP contract of API.md, through the Flask app in-process against real Postgres/Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import PASSWORD, PIN, fund

PROBLEM = "application/problem+json"


def login(client, email: str, password: str = PASSWORD) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['access_token']}"}


def assert_problem(r, status: int, code: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == PROBLEM
    body = r.json
    assert body["status"] == status and body["code"] == code and body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    return alice, bob


def transfer_body(alice, bob, **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 100,
        "currency": "USD",
        "pin": PIN,
        "reference": "test",
    }
    body.update(over)
    return body


def post_transfer(client, headers, body, key: str | None = "auto"):  # type: ignore[no-untyped-def]
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
    return client.post("/api/v1/transfers", json=body, headers=h)


def test_register_then_login_then_me(client) -> None:  # type: ignore[no-untyped-def]
    email = f"new.{uuid.uuid4().hex[:8]}@example.com"
    r = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "full_name": "New"})
    assert r.status_code == 201
    assert r.json["user"]["kyc_status"] == "PENDING" and r.json["user"]["status"] == "INACTIVE"
    assert r.json["account"] == {**r.json["account"], "status": "INACTIVE", "balance": 0, "currency": "USD"}
    assert "password" not in r.get_data(as_text=True)
    dup = client.post("/api/v1/auth/register", json={"email": email.upper(), "password": PASSWORD, "full_name": "N"})
    assert_problem(dup, 409, "CONFLICT")
    me = client.get("/api/v1/me", headers=login(client, email)).json
    assert me["email"] == email and me["pin_set"] is False and me["role"] == "customer"


def test_wrong_password_and_unknown_email_get_the_same_answer(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    a = client.post("/api/v1/auth/login", json={"email": c.email, "password": "wrong password!"})
    b = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong password!"})
    assert assert_problem(a, 401, "UNAUTHORIZED") == assert_problem(b, 401, "UNAUTHORIZED")


def test_kyc_approve_and_reject(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    admin_h = login(client, admin_user.email)
    a, b = make_customer(approved=False), make_customer(approved=False)
    ok = client.post(f"/api/v1/admin/users/{a.user.id}/kyc", json={"decision": "APPROVE"}, headers=admin_h)
    assert ok.status_code == 200 and ok.json["status"] == "ACTIVE" and ok.json["kyc_status"] == "APPROVED"
    acc = client.get(f"/api/v1/accounts/{a.account.id}", headers=login(client, a.email)).json
    assert acc["status"] == "ACTIVE"
    no = client.post(
        f"/api/v1/admin/users/{b.user.id}/kyc", json={"decision": "REJECT", "reason": "docs"}, headers=admin_h
    )
    assert no.json["kyc_status"] == "REJECTED" and no.json["status"] == "INACTIVE"
    acc = client.get(f"/api/v1/accounts/{b.account.id}", headers=login(client, b.email)).json
    assert acc["status"] == "INACTIVE"


def test_admin_endpoints_need_the_admin_role(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    r = client.post(
        f"/api/v1/admin/users/{c.user.id}/kyc", json={"decision": "APPROVE"}, headers=login(client, c.email)
    )
    assert_problem(r, 403, "FORBIDDEN")
    assert_problem(client.get("/api/v1/admin/audit"), 401, "UNAUTHORIZED")


def test_transfer_accepted_with_location(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    r = post_transfer(client, login(client, alice.email), transfer_body(alice, bob))
    assert r.status_code == 202
    assert r.json["status"] == "PENDING" and r.json["amount"] == 100
    assert r.headers["Location"] == f"/api/v1/transfers/{r.json['id']}"
    assert "pin" not in r.json


def test_same_key_same_body_replays_and_other_body_is_refused(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    first = post_transfer(client, h, transfer_body(alice, bob), key="k-1")
    again = post_transfer(client, h, transfer_body(alice, bob), key="k-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]
    other = post_transfer(client, h, transfer_body(alice, bob, amount=101), key="k-1")
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")


def test_rejected_request_does_not_bind_its_key(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    assert_problem(post_transfer(client, h, transfer_body(alice, bob, pin="9999"), key="k-2"), 403, "INVALID_PIN")
    assert post_transfer(client, h, transfer_body(alice, bob), key="k-2").status_code == 202


@pytest.mark.parametrize(
    "field,value",
    [
        ("amount", 1.5),
        ("amount", 100.0),
        ("amount", "100"),
        ("amount", 0),
        ("amount", -5),
        ("amount", 2**53),
        ("amount", True),
        ("currency", "usd"),
        ("source_account_id", "not-a-uuid"),
        ("pin", "12"),
        ("unexpected", "field"),
    ],
)
def test_bad_input_is_422_problem(client, pair, field, value) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    body = assert_problem(
        post_transfer(client, login(client, alice.email), transfer_body(alice, bob, **{field: value})),
        422,
        "VALIDATION_ERROR",
    )
    assert field in body["errors"]


def test_malformed_json_is_400_not_500(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, _ = pair
    h = {**login(client, alice.email), "Idempotency-Key": "x", "Content-Type": "application/json"}
    assert_problem(client.post("/api/v1/transfers", data="{not json", headers=h), 400, "BAD_REQUEST")
    # Not a JSON object: malformed too (API.md "Errors"), not a field's 422.
    assert_problem(client.post("/api/v1/transfers", data="[1,2]", headers=h), 400, "BAD_REQUEST")


def test_body_too_large_is_413(client) -> None:  # type: ignore[no-untyped-def]
    big = '{"email": "' + "a" * 70_000 + '"}'
    r = client.post("/api/v1/auth/login", data=big, headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "PAYLOAD_TOO_LARGE")


def test_missing_idempotency_key_is_400(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    r = post_transfer(client, login(client, alice.email), transfer_body(alice, bob), key=None)
    assert_problem(r, 400, "IDEMPOTENCY_KEY_REQUIRED")


def test_synchronous_business_checks(client, pair, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    assert_problem(post_transfer(client, h, transfer_body(alice, alice)), 422, "SAME_ACCOUNT")
    # The caller's own side is specific; the destination's is one answer (tests/integration/test_identity_sec.py).
    assert_problem(post_transfer(client, h, transfer_body(alice, bob, currency="EUR")), 422, "CURRENCY_MISMATCH")
    pending = make_customer(approved=False)
    assert_problem(post_transfer(client, h, transfer_body(alice, pending)), 404, "NOT_FOUND")
    assert_problem(
        post_transfer(client, login(client, pending.email), transfer_body(pending, bob)), 403, "KYC_NOT_APPROVED"
    )
    nopin = make_customer(pin=None)
    assert_problem(post_transfer(client, login(client, nopin.email), transfer_body(nopin, bob)), 409, "PIN_NOT_SET")


def test_owner_and_kyc_are_checked_before_the_pin(client, pair, make_customer) -> None:  # type: ignore[no-untyped-def]
    """API.md's order: the source is the caller's, then KYC, then the PIN. Neither refusal counts
    a PIN failure."""
    alice, bob = pair
    newcomer = make_customer(approved=False, pin=None)
    r = post_transfer(client, login(client, newcomer.email), transfer_body(newcomer, bob))
    assert_problem(r, 403, "KYC_NOT_APPROVED")
    nopin = make_customer(pin=None)
    assert_problem(post_transfer(client, login(client, nopin.email), transfer_body(alice, bob)), 404, "NOT_FOUND")
    mallory = make_customer()
    mh = login(client, mallory.email)
    for _ in range(6):  # more than the PIN's five tries
        assert_problem(post_transfer(client, mh, transfer_body(alice, bob, pin="0000")), 404, "NOT_FOUND")
    unapproved = make_customer(approved=False)
    uh = login(client, unapproved.email)  # a wrong PIN is not what stops this caller
    assert_problem(post_transfer(client, uh, transfer_body(unapproved, bob, pin="0000")), 403, "KYC_NOT_APPROVED")
    # No PIN failure was counted on either caller.
    assert post_transfer(client, mh, transfer_body(mallory, bob)).status_code == 202
    assert_problem(post_transfer(client, mh, transfer_body(mallory, bob, pin="0000")), 403, "INVALID_PIN")


def test_five_wrong_pins_lock_for_everyone_even_the_right_pin(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    h = login(client, alice.email)
    codes = [post_transfer(client, h, transfer_body(alice, bob, pin="0000")).status_code for _ in range(5)]
    assert codes == [403, 403, 403, 403, 423]
    assert_problem(post_transfer(client, h, transfer_body(alice, bob)), 423, "PIN_LOCKED")


def test_other_users_resources_are_404(client, pair, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    mallory = make_customer()
    t = post_transfer(client, login(client, alice.email), transfer_body(alice, bob)).json
    mh = login(client, mallory.email)
    for path in (
        f"/api/v1/accounts/{alice.account.id}",
        f"/api/v1/accounts/{alice.account.id}/entries",
        f"/api/v1/transfers/{t['id']}",
        f"/api/v1/transfers/{uuid.uuid4()}",
    ):
        assert_problem(client.get(path, headers=mh), 404, "NOT_FOUND")
    # Spending from someone else's account is a 404 too, and moves nothing.
    assert_problem(post_transfer(client, mh, transfer_body(alice, mallory)), 404, "NOT_FOUND")
    assert client.get("/api/v1/transfers", headers=mh).json["items"] == []
    # The receiver may see the transfer that credits them.
    assert client.get(f"/api/v1/transfers/{t['id']}", headers=login(client, bob.email)).status_code == 200


def test_pin_change_needs_the_current_pin(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    h = login(client, c.email)
    assert_problem(client.put("/api/v1/me/pin", json={"pin": "5678"}, headers=h), 422, "VALIDATION_ERROR")
    assert_problem(
        client.put("/api/v1/me/pin", json={"pin": "5678", "current_pin": "0000"}, headers=h), 403, "INVALID_PIN"
    )
    changed = client.put("/api/v1/me/pin", json={"pin": "5678", "current_pin": PIN}, headers=h)
    assert changed.status_code == 204 and changed.data == b"" and "Content-Type" not in changed.headers


def test_deposit_is_idempotent_and_double_entry(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    admin_h = {**login(client, admin_user.email), "Idempotency-Key": f"dep-{uuid.uuid4()}"}
    url = f"/api/v1/admin/accounts/{c.account.id}/deposits"
    first = client.post(url, json={"amount": 500, "currency": "USD"}, headers=admin_h)
    again = client.post(url, json={"amount": 500, "currency": "USD"}, headers=admin_h)
    assert first.status_code == 201 and first.json["transfer"]["status"] == "COMPLETED"
    assert again.status_code == 200 and again.json["transfer"]["id"] == first.json["transfer"]["id"]
    h = login(client, c.email)
    assert client.get(f"/api/v1/accounts/{c.account.id}", headers=h).json["balance"] == 500
    entries = client.get(f"/api/v1/accounts/{c.account.id}/entries", headers=h).json
    assert [(e["amount"], e["balance_after"]) for e in entries["items"]] == [(500, 500)]
    wrong = client.post(url, json={"amount": 5, "currency": "EUR"}, headers={**admin_h, "Idempotency-Key": "other"})
    assert_problem(wrong, 422, "CURRENCY_MISMATCH")


def test_freeze_then_deposit_is_refused(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    admin_h = login(client, admin_user.email)
    r = client.post(f"/api/v1/admin/accounts/{c.account.id}/freeze", json={"reason": "fraud check"}, headers=admin_h)
    assert r.status_code == 200 and r.json["status"] == "FROZEN"
    dep = client.post(
        f"/api/v1/admin/accounts/{c.account.id}/deposits",
        json={"amount": 5, "currency": "USD"},
        headers={**admin_h, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_problem(dep, 409, "ACCOUNT_INACTIVE")
    r = client.post(f"/api/v1/admin/accounts/{c.account.id}/unfreeze", json={"reason": "cleared"}, headers=admin_h)
    assert r.json["status"] == "ACTIVE"


def test_cursor_pagination_walks_every_entry_once(client, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    for _ in range(7):
        fund(sessions, admin_user, c.account, 1)
    h = login(client, c.email)
    seen, cursor = [], None
    while True:
        q = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = client.get(f"/api/v1/accounts/{c.account.id}/entries{q}", headers=h).json
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7
    assert_problem(
        client.get(f"/api/v1/accounts/{c.account.id}/entries?cursor=%%%", headers=h), 422, "VALIDATION_ERROR"
    )


def test_admin_lists_every_transfer_customers_only_their_own(client, pair, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    t = post_transfer(client, login(client, alice.email), transfer_body(alice, bob)).json
    admin = login(client, admin_user.email)
    listed = client.get(f"/api/v1/transfers?account_id={alice.account.id}", headers=admin)
    assert listed.status_code == 200 and [i["id"] for i in listed.json["items"]][:1] == [t["id"]]
    everything = client.get("/api/v1/transfers?status=PENDING&limit=100", headers=admin).json["items"]
    assert t["id"] in {i["id"] for i in everything}
    mallory = login(client, make_customer().email)
    assert client.get(f"/api/v1/transfers?account_id={alice.account.id}", headers=mallory).json["items"] == []
    assert client.get("/api/v1/transfers", headers=login(client, bob.email)).json["items"][0]["id"] == t["id"]


def test_admin_lists_pending_users_and_audit(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    pending = make_customer(approved=False)
    admin_h = login(client, admin_user.email)
    users = client.get("/api/v1/admin/users?kyc_status=PENDING&limit=100", headers=admin_h).json
    assert all(u["kyc_status"] == "PENDING" for u in users["items"])
    audit = client.get(f"/api/v1/admin/audit?entity_id={pending.user.id}", headers=admin_h).json["items"]
    assert {"user.registered"} <= {a["action"] for a in audit}


def test_request_id_is_echoed_or_generated(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert uuid.UUID(generated)


def test_ops_endpoints(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/healthz").status_code == 200
    assert client.get("/readyz").json["checks"] == {"postgres": "ok", "redis": "ok"}
    spec = client.get("/openapi.json").json
    assert "/api/v1/transfers" in spec["paths"] and spec["openapi"].startswith("3.")
    assert client.get("/api/v1/openapi.json").status_code == 200
    root_docs = client.get("/docs")
    assert root_docs.status_code == 200 and root_docs.data == client.get("/api/v1/docs").data
    assert b"flask_http_request" in client.get("/metrics").data


def test_unknown_route_and_method_are_problems(client) -> None:  # type: ignore[no-untyped-def]
    assert_problem(client.get("/api/v1/nope"), 404, "NOT_FOUND")
    assert_problem(client.delete("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("value", ["USD\n", "usd", "US"])
def test_a_currency_with_a_trailing_newline_is_422_not_500(client, make_customer, value) -> None:  # type: ignore[no-untyped-def]
    """`$` matches before a final newline; validation anchors at the very end (\\Z)."""
    c = make_customer()
    assert_problem(
        client.post("/api/v1/accounts", json={"currency": value}, headers=login(client, c.email)),
        422,
        "VALIDATION_ERROR",
    )
    email = f"nl.{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "full_name": "N", "currency": value}
    assert_problem(client.post("/api/v1/auth/register", json=body), 422, "VALIDATION_ERROR")


def test_an_email_that_grows_on_lower_is_422_not_500(client) -> None:  # type: ignore[no-untyped-def]
    email = "İ" * 200 + "@x.io"  # 205 characters, 405 once lower-cased
    body = {"email": email, "password": PASSWORD, "full_name": "Long"}
    assert_problem(client.post("/api/v1/auth/register", json=body), 422, "VALIDATION_ERROR")
    login_body = {"email": email, "password": PASSWORD}
    assert_problem(client.post("/api/v1/auth/login", json=login_body), 422, "VALIDATION_ERROR")


def test_sql_errors_never_carry_their_parameters(sessions) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    secret = "argon2-hash-that-must-not-be-logged"
    with pytest.raises(DBAPIError) as failed, sessions.begin() as s:
        s.execute(text("SELECT 1 / 0 WHERE CAST(:v AS text) IS NOT NULL"), {"v": secret})  # fails, not on :v
    assert secret not in str(failed.value)


def test_an_unknown_currency_is_a_422_everywhere(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/auth/register",
        json={
            "email": f"z.{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD,
            "full_name": "Z",
            "currency": "ZZZ",
        },
    )
    assert_problem(r, 422, "VALIDATION_ERROR")
    assert "currency" in r.get_json()["errors"]


def test_every_list_pages_with_opaque_cursors_and_refuses_bad_ones(client, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    for _ in range(3):
        fund(sessions, admin_user, c.account, 1)
    admin_h, h = login(client, admin_user.email), login(client, c.email)
    lists = [
        ("/api/v1/admin/audit?action=deposit.completed", admin_h),  # every test's deposits: 3 pages only
        (f"/api/v1/transfers?account_id={c.account.id}", h),
        (f"/api/v1/accounts/{c.account.id}/entries?", h),
    ]
    cursors = []
    for url, headers in lists:
        seen, cursor = [], None
        while len(seen) < 3:
            page = client.get(f"{url}&limit=1" + (f"&cursor={cursor}" if cursor else ""), headers=headers).json
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if len(seen) < 3:
                assert isinstance(cursor, str) and not cursor.isdigit()
                cursors.append(cursor)
        assert len(seen) == len(set(seen)) == 3, url
        if "account" in url:
            assert cursor is None  # the end of the list
    for (url, headers), foreign in zip(lists, [cursors[-1], cursors[0], "123"], strict=True):
        assert_problem(client.get(f"{url}&cursor={foreign}", headers=headers), 422, "VALIDATION_ERROR")
