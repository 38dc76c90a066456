"""Request bodies are JSON objects sent as application/json (API.md "Errors").

A non-empty body of any other Content-Type, or of none, is 415 UNSUPPORTED_MEDIA_TYPE before the
view runs: webargs read such a body as absent, so ``curl -d '{"amount":100}'`` (a form, to curl)
captured or refunded everything. A JSON body that is not an object, has trailing data or repeats a
key is 400 BAD_REQUEST. Booleans are JSON true/false only. Capture and refund answer for the
other party's account as POST /transfers does."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import request
from flask_jwt_extended import jwt_required
from sqlalchemy import text

from core.accounts.service import set_frozen
from core.schema import Base
from core.transfers.submit import DESTINATION_CANNOT_RECEIVE
from tests.authflow import API, PROBLEM, assert_problem, bearer, tokens
from tests.factories import PIN, balance, fund
from tests.integration.test_bola import example
from tests.integration.test_holds_api import held
from tests.integration.test_refunds import pay
from web.hardening import raw_body, takes_raw_body

PARAM = re.compile(r"{([^}]+)}")
METHODS = ("post", "put", "patch", "delete")
JSON = "application/json"
NOT_JSON = {
    "form": "application/x-www-form-urlencoded",  # what curl -d sends without -H 'Content-Type: …'
    "text": "text/plain",
    "none": None,
    "problem+json": "application/problem+json",
    "utf-16": "application/json; charset=utf-16",
}


@pytest.fixture
def world(client, make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    """alice paid bob 1,000 (COMPLETED, bob may refund it) and holds 400 for bob (HELD, alice may
    capture it); their tokens, and an admin's."""
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    paid = pay(sessions, alice, bob.account, 1_000)
    hold = held(client, sessions, alice, bob, 400)["id"]
    h = {
        "alice": bearer(tokens(client, alice.email)["access_token"]),
        "bob": bearer(tokens(client, bob.email)["access_token"]),
        "admin": bearer(tokens(client, admin_user.email)["access_token"]),
    }
    return alice, bob, str(paid), hold, h


def state(sessions) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Every table's rows, as one digest each: any write anywhere shows."""
    with sessions() as s:
        return {
            t.name: s.execute(
                text(f"SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) FROM \"{t.name}\" r")
            ).scalar_one()
            for t in Base.metadata.sorted_tables
        }


def body_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        if path.startswith(API)
        for method, op in item.items()
        # JSON bodies; a statement file (POST /admin/reconciliations, @raw_body) checks its own types
        # (tests/integration/test_reconciliations.py).
        if method in METHODS and JSON in op.get("requestBody", {}).get("content", {})
    ]


def test_every_body_route_refuses_other_content_types_and_changes_nothing(client, sessions, world) -> None:  # type: ignore[no-untyped-def]
    alice, _bob, paid, hold, h = world
    spec = client.get("/openapi.json").json
    ops = body_operations(spec)
    assert {f"{API}/transfers/{{transfer_id}}/capture", f"{API}/transfers/{{transfer_id}}/refunds"} <= {
        p for _, p, _ in ops
    }
    before = state(sessions)
    failures = []
    for method, path, op in ops:
        assert 415 in map(int, op["responses"]), f"{method} {path}: 415 not documented"
        if path.endswith("/refunds"):
            ids, who = {"transfer_id": paid}, "bob"
        else:
            ids, who = (
                {
                    "transfer_id": hold,
                    "account_id": str(alice.account.id),
                    "user_id": str(alice.user.id),
                    "line": "1",  # a statement line's number (the resolve route takes an integer)
                },
                "alice",
            )
        if path.startswith(f"{API}/admin/"):
            who = "admin"
        url = PARAM.sub(lambda m, ids=ids: ids.get(m.group(1), str(uuid.uuid4())), path)  # type: ignore[misc]
        schema = op["requestBody"]["content"][JSON]["schema"]
        body = {"amount": 100} if path.endswith(("/capture", "/refunds")) else example(schema, spec)
        for name, content_type in NOT_JSON.items():
            # A form of no fields is an empty body, which is {} (allowed): send one field then.
            data = urlencode({k: json.dumps(v) if not isinstance(v, str) else v for k, v in body.items()}) or "x=1"
            kwargs: dict[str, Any] = {"data": data if name == "form" else json.dumps(body)}
            if content_type:
                kwargs["content_type"] = content_type
            headers = {**h[who], "Idempotency-Key": str(uuid.uuid4())}
            r = getattr(client, method)(url, headers=headers, **kwargs)
            if (
                r.status_code != 415
                or r.headers["Content-Type"] != PROBLEM
                or r.json["code"] != "UNSUPPORTED_MEDIA_TYPE"
            ):
                failures.append(f"{method.upper()} {path} as {name}: {r.status_code} {r.get_data(as_text=True)}")
    assert failures == [], "\n".join(failures)
    assert state(sessions) == before
    # The same capture and refund as JSON do move money: the walk above tried real requests.
    ok = {"Content-Type": "application/json; charset=UTF-8"}
    captured = client.post(
        f"{API}/transfers/{hold}/capture", data='{"amount":100}', headers={**h["alice"], **ok, "Idempotency-Key": "c"}
    )
    assert captured.status_code == 202 and captured.json["captured_amount"] == 100, captured.json
    refunded = client.post(
        f"{API}/transfers/{paid}/refunds", data='{"amount":100}', headers={**h["bob"], **ok, "Idempotency-Key": "r"}
    )
    assert refunded.status_code == 202 and refunded.json["amount"] == 100, refunded.json


def test_a_view_marked_raw_body_gets_any_content_type(make_app, settings) -> None:  # type: ignore[no-untyped-def]
    """The opt-out a non-JSON endpoint (a bank statement file) takes; the others still answer 415."""
    app = make_app(settings)

    @jwt_required(optional=True)  # a wrapping decorator under the mark, as real views have
    def statement_file() -> tuple[str, int]:
        return f"{request.mimetype} {len(request.get_data())}", 201

    app.add_url_rule(f"{API}/_raw", "raw_test", raw_body(statement_file), methods=["POST"])
    client = app.test_client()
    for content_type in ("application/xml", "text/csv", "text/plain", "application/json"):
        r = client.post(f"{API}/_raw", data="<Document/>", content_type=content_type)
        assert (r.status_code, r.get_data(as_text=True)) == (201, f"{content_type} 11")
    assert_problem(
        client.post(f"{API}/auth/login", data="<Document/>", content_type="application/xml"),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )


RAW_API_BODIES = ["reconciliations.import_statement"]  # a statement file: camt.053, BAI2 or CSV


def test_no_endpoint_takes_a_raw_body_yet(app) -> None:  # type: ignore[no-untyped-def]
    """A view marked @raw_body must check its own body's type (and this list then names it).
    The operators' console's forms are HTML forms (Flask-WTF reads and checks them), never /api/;
    the API's one is the statement import, which answers 415 to a type it does not read."""
    with app.app_context():
        raw = [e for e in app.view_functions if takes_raw_body(e)]
        assert [e for e in raw if not e.startswith("console.")] == RAW_API_BODIES
        api = [r.endpoint for r in app.url_map.iter_rules() if r.endpoint in raw and str(r).startswith("/api/")]
        assert api == RAW_API_BODIES


def test_curl_d_without_a_json_type_captures_or_refunds_nothing(client, sessions, world) -> None:  # type: ignore[no-untyped-def]
    """The issue's report: ``curl -d '{"amount":100}'`` moved the whole hold or the whole payment.
    Both actions on one world (one setup, where a test per action built two)."""
    alice, bob, paid, hold, h = world
    before = state(sessions)
    for action in ("capture", "refunds"):
        transfer, who = (hold, "alice") if action == "capture" else (paid, "bob")
        for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
            r = client.post(
                f"{API}/transfers/{transfer}/{action}",
                data='{"amount":100}',
                headers={
                    **h[who],
                    "Idempotency-Key": str(uuid.uuid4()),
                    **({"Content-Type": content_type} if content_type else {}),
                },
            )
            assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert state(sessions) == before, action
    assert client.get(f"{API}/transfers/{hold}", headers=h["alice"]).json["status"] == "HELD"
    assert (balance(sessions, alice.account.id), balance(sessions, bob.account.id)) == (9_000, 1_000)


NOT_ONE_OBJECT = [
    "[]",
    "null",
    "1",
    '"amount"',
    '[{"amount": 100}]',
    '{"amount": 100} trailing',
    '{"amount": 100}{"amount": 100}',
    '{"amount": 100}\x00',
    '{"amount": 100, "amount": 400}',
    '{"reason": "x", "amount": 100, "reason": "y"}',
    " ",
]


@pytest.mark.parametrize("action", ["capture", "refunds"])
def test_a_json_body_that_is_not_one_object_is_400_and_changes_nothing(client, sessions, world, action) -> None:  # type: ignore[no-untyped-def]
    """Every body of NOT_ONE_OBJECT on one world (it was a test per body, each building the world):
    each is 400 and writes nothing (the state is compared after each one); every failing body is named."""
    _alice, _bob, paid, hold, h = world
    transfer, who = (hold, "alice") if action == "capture" else (paid, "bob")
    before = state(sessions)
    failures = []
    for body in NOT_ONE_OBJECT:
        r = client.post(
            f"{API}/transfers/{transfer}/{action}",
            data=body,
            headers={**h[who], "Idempotency-Key": str(uuid.uuid4()), "Content-Type": JSON},
        )
        try:
            assert_problem(r, 400, "BAD_REQUEST")
        except AssertionError as wrong:
            failures.append(f"{body!r}: {wrong}")
        if state(sessions) != before:
            failures.append(f"{body!r}: wrote to the database")
            before = state(sessions)
    assert failures == [], "\n".join(failures)


def test_a_repeated_key_is_400_at_any_depth(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, bob, _paid, _hold, h = world
    item = (
        f'{{"idempotency_key": "k1", "source_account_id": "{alice.account.id}", '
        f'"destination_account_id": "{bob.account.id}", "amount": 5, "amount": 5000, "currency": "USD"}}'
    )
    batch = f'{{"pin": "{PIN}", "items": [{item}]}}'
    r = client.post(f"{API}/transfers/batch", data=batch, headers={**h["alice"], "Content-Type": JSON})
    assert "amount" in assert_problem(r, 400, "BAD_REQUEST")["detail"]


def test_an_empty_body_is_an_empty_object(client, world) -> None:  # type: ignore[no-untyped-def]
    """curl -X POST with no -d sends no body and no Content-Type: every field optional, as {}."""
    _alice, _bob, _paid, hold, h = world
    r = client.post(f"{API}/transfers/{hold}/void", headers={**h["bob"], "Idempotency-Key": "v"})
    assert r.status_code == 202 and r.json["status"] == "VOIDED", r.json


def test_booleans_are_json_true_or_false_only(client, world) -> None:  # type: ignore[no-untyped-def]
    """Each non-boolean value on one world (it was a test per value, each building the world)."""
    alice, bob, _paid, _hold, h = world
    for value in (1, 0, "true", "false", None):
        item = {
            "idempotency_key": str(uuid.uuid4()),
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 5,
            "currency": "USD",
        }
        r = client.post(
            f"{API}/transfers/batch", json={"pin": PIN, "atomic": value, "items": [item]}, headers=h["alice"]
        )
        assert "atomic" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"], value
        r = client.post(
            f"{API}/transfers/batch", json={"pin": PIN, "items": [{**item, "hold": value}]}, headers=h["alice"]
        )
        assert r.status_code == 200, (value, r.json)
        (result,) = r.json["items"]
        assert result["status"] == 422 and "hold" in result["error"]["errors"], (value, result)
        r = client.post(f"{API}/me/otp", json={"enabled": value}, headers=h["alice"])
        assert "enabled" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"], value
        r = client.post(f"{API}/auth/otp/verify", json={"challenge_id": "c", "code": "123456", "trust_device": value})
        assert "trust_device" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"], value
        r = client.post(
            f"{API}/transfers",
            json={**{k: v for k, v in item.items() if k != "idempotency_key"}, "pin": PIN, "hold": value},
            headers={**h["alice"], "Idempotency-Key": str(uuid.uuid4())},
        )
        assert "hold" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"], value


def _freeze(sessions, account, admin_user) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        set_frozen(s, account.id, frozen=True, admin_id=admin_user.id, reason="compliance", request_id=None)


def _destination_answer(client, h, alice, bob) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What POST /transfers answers alice for bob's account as it is now."""
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 1,
        "currency": "USD",
        "pin": PIN,
    }
    r = client.post(f"{API}/transfers", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})
    return assert_problem(r, 404, "NOT_FOUND")


def test_a_capture_does_not_reveal_that_the_payees_account_is_frozen(client, sessions, world, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob, _paid, hold, h = world
    _freeze(sessions, bob.account, admin_user)
    expected = _destination_answer(client, h["alice"], alice, bob)
    for who in ("alice", "admin"):
        r = client.post(
            f"{API}/transfers/{hold}/capture", json={}, headers={**h[who], "Idempotency-Key": str(uuid.uuid4())}
        )
        got = assert_problem(r, 404, "NOT_FOUND")
        assert (
            (got["title"], got["detail"])
            == (expected["title"], expected["detail"])
            == ("Not Found", DESTINATION_CANNOT_RECEIVE)
        )
    assert client.get(f"{API}/transfers/{hold}", headers=h["alice"]).json["status"] == "HELD"


def test_a_capture_names_the_capturers_own_frozen_account(client, sessions, world, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, _bob, _paid, hold, h = world
    _freeze(sessions, alice.account, admin_user)
    r = client.post(f"{API}/transfers/{hold}/capture", json={}, headers={**h["alice"], "Idempotency-Key": "c"})
    assert "source account is FROZEN" in assert_problem(r, 409, "ACCOUNT_INACTIVE")["detail"]


def test_a_refund_does_not_reveal_that_the_payers_account_is_frozen(client, sessions, world, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob, paid, _hold, h = world
    _freeze(sessions, alice.account, admin_user)
    expected = _destination_answer(client, h["bob"], bob, alice)
    for who in ("bob", "admin"):
        r = client.post(
            f"{API}/transfers/{paid}/refunds", json={}, headers={**h[who], "Idempotency-Key": str(uuid.uuid4())}
        )
        got = assert_problem(r, 404, "NOT_FOUND")
        assert (got["title"], got["detail"]) == (expected["title"], expected["detail"])
    assert balance(sessions, bob.account.id) == 1_000
