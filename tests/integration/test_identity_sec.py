"""Outside review (issue 10): destination probing, KYC transitions, OTP and login lockouts, revocations."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select, update

from core.accounts.service import settlement_account_id
from core.models import Account, AccountStatus, AuditLog
from tests.authflow import API, assert_problem, bearer, login, otp_code, tokens
from tests.factories import PASSWORD, PIN, fund


def _send(client: Any, h: dict[str, str], source: Any, destination: str, currency: str = "USD") -> Any:
    body = {
        "source_account_id": str(source.account.id),
        "destination_account_id": destination,
        "amount": 1,
        "currency": currency,
        "pin": PIN,
    }
    return client.post(f"{API}/transfers", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})


# ---- item 8: a destination that cannot receive gives one answer --------------------------------


def test_every_destination_that_cannot_receive_gets_the_same_answer(
    client, make_customer, sessions, admin_user
) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 100)
    h = bearer(tokens(client, alice.email)["access_token"])
    frozen, closed, eur = make_customer(), make_customer(), make_customer(currency="EUR")
    inactive = make_customer(approved=False)
    with sessions.begin() as s:
        s.execute(update(Account).where(Account.id == frozen.account.id).values(status=AccountStatus.FROZEN))
        s.execute(update(Account).where(Account.id == closed.account.id).values(status=AccountStatus.CLOSED))
        settlement = settlement_account_id(s, "USD")
    destinations = [frozen.account.id, closed.account.id, inactive.account.id, eur.account.id, settlement, uuid.uuid4()]
    answers = set()
    for destination in destinations:
        body = assert_problem(_send(client, h, alice, str(destination)), 404, "NOT_FOUND")
        answers.add((body["title"], body["detail"], tuple(sorted(body))))
    assert len(answers) == 1, answers
    # The caller's own account may be specific: it tells them nothing they do not know.
    assert_problem(_send(client, h, alice, str(make_customer().account.id), "EUR"), 422, "CURRENCY_MISMATCH")
    assert _send(client, h, alice, str(make_customer().account.id)).status_code == 202


# ---- item 4: KYC REJECT after APPROVE suspends the user and freezes the accounts ----------------


def test_kyc_reject_after_approve_suspends_and_freezes(client, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 100)
    alice_h = bearer(tokens(client, alice.email)["access_token"])
    bob_h = bearer(tokens(client, bob.email)["access_token"])
    admin_h = bearer(tokens(client, admin_user.email)["access_token"])
    assert _send(client, alice_h, alice, str(bob.account.id)).status_code == 202

    r = client.post(f"{API}/admin/users/{bob.user.id}/kyc", json={"decision": "REJECT", "reason": "fraud"},
                    headers=admin_h)  # fmt: skip
    assert r.status_code == 200, r.json
    assert (r.json["kyc_status"], r.json["status"]) == ("REJECTED", "SUSPENDED")
    with sessions() as s:
        assert s.get_one(Account, bob.account.id).status == AccountStatus.FROZEN
    # Incoming transfers now fail, and bob's tokens and logins stop working.
    assert_problem(_send(client, alice_h, alice, str(bob.account.id)), 404, "NOT_FOUND")
    assert_problem(client.get(f"{API}/me", headers=bob_h), 401, "UNAUTHORIZED")
    assert_problem(login(client, bob.email), 401, "UNAUTHORIZED")
    audit = client.get(f"{API}/admin/audit", query_string={"entity_id": str(bob.user.id)}, headers=admin_h).json
    rejected = [a for a in audit["items"] if a["action"] == "kyc.rejected"]
    assert rejected and rejected[0]["details"]["user_suspended"] is True
    assert rejected[0]["details"]["accounts_frozen"] == [str(bob.account.id)]
    frozen = client.get(f"{API}/admin/audit", query_string={"entity_id": str(bob.account.id)}, headers=admin_h).json
    assert "account.frozen" in [a["action"] for a in frozen["items"]]

    # Re-approval reinstates the user; the frozen account waits for an explicit unfreeze.
    r = client.post(f"{API}/admin/users/{bob.user.id}/kyc", json={"decision": "APPROVE"}, headers=admin_h)
    assert (r.json["kyc_status"], r.json["status"]) == ("APPROVED", "ACTIVE")
    with sessions() as s:
        assert s.get_one(Account, bob.account.id).status == AccountStatus.FROZEN
    unfreeze = client.post(f"{API}/admin/accounts/{bob.account.id}/unfreeze", json={"reason": "cleared"},
                           headers=admin_h)  # fmt: skip
    assert unfreeze.status_code == 200
    assert _send(client, alice_h, alice, str(bob.account.id)).status_code == 202


# ---- items 1 and 3: OTP under the login lockout; locks per client address ----------------------

VERIFY = f"{API}/auth/otp/verify"


@pytest.fixture
def lax(make_app):  # type: ignore[no-untyped-def]
    """An app whose rate limits stay out of the way (own key prefix), so only the lockout answers."""

    def make(**overrides: Any):  # type: ignore[no-untyped-def]
        limits = {f"rate_limit_{k}": "1000 per minute" for k in ("login_ip", "login_account", "otp_verify")}
        return make_app(rate_limit_key_prefix=f"test-{uuid.uuid4().hex}", **limits, **overrides)

    return make


def _from(address: str) -> dict[str, Any]:
    return {"address": address}


def _login(client: Any, email: str, password: str = PASSWORD, address: str = "127.0.0.1", **body: Any) -> Any:
    return client.post(f"{API}/auth/login", json={"email": email, "password": password, **body},
                       environ_base={"REMOTE_ADDR": address})  # fmt: skip


def _otp_on(client: Any, email: str) -> None:
    h = bearer(tokens(client, email)["access_token"])
    assert client.post(f"{API}/me/otp", json={"enabled": True}, headers=h).status_code == 200


def _challenge(client: Any, email: str, **extra: Any) -> str:
    return str(assert_problem(_login(client, email, **extra), 401, "OTP_REQUIRED")["challenge_id"])


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _answer(client: Any, cid: str, code: str, address: str = "127.0.0.1", **extra: Any) -> Any:
    return client.post(VERIFY, json={"challenge_id": cid, "code": code, **extra}, environ_base={"REMOTE_ADDR": address})


def test_otp_answers_are_bounded_by_the_lockout_and_a_right_code_never_unlocks(
    lax, make_customer, redis_client
) -> None:  # type: ignore[no-untyped-def]
    client = lax().test_client()
    c = make_customer()
    _otp_on(client, c.email)
    cids = [_challenge(client, c.email) for _ in range(4)]  # the password is known: challenges are free
    statuses = [_answer(client, cid, _wrong(otp_code(cid))).status_code for cid in cids[:3] for _ in range(5)]
    assert statuses == [401] * 5 + [429] * 10  # 5 wrong codes in the window, across all challenges
    last = cids[3]
    r = _answer(client, last, otp_code(last))
    assert_problem(r, 429, "RATE_LIMITED")
    assert 14 * 60 < int(r.headers["Retry-After"]) <= 15 * 60
    assert redis_client.hget(f"otp:challenge:{last}", "attempts") == b"0"  # not even compared
    assert_problem(_login(client, c.email), 429, "RATE_LIMITED")  # and nothing was unlocked


@pytest.mark.commits  # requests in parallel threads, each on a connection of its own
def test_parallel_wrong_codes_are_still_bounded(lax, make_customer) -> None:  # type: ignore[no-untyped-def]
    """The lockout rows are held while a code is compared: parallel guesses queue, none slip past."""
    app = lax()
    c = make_customer()
    _otp_on(app.test_client(), c.email)
    cids = [_challenge(app.test_client(), c.email) for _ in range(4)]
    guesses = [(cid, _wrong(otp_code(cid))) for cid in cids for _ in range(5)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda g: _answer(app.test_client(), *g).status_code, guesses))
    assert sorted(statuses) == [401] * 5 + [429] * 15


def test_wrong_codes_from_many_addresses_stop_at_the_email_wide_lock(lax, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = lax(login_email_max_failures=7).test_client()
    c = make_customer()
    _otp_on(client, c.email)
    cids = [_challenge(client, c.email) for _ in range(4)]
    wrong = 0
    for i, cid in enumerate(cids):
        code = otp_code(cid)
        for _ in range(5):
            wrong += _answer(client, cid, _wrong(code), address=f"10.1.0.{i}").status_code == 401
    assert wrong == 7


def test_a_locked_address_does_not_lock_the_owner_out_elsewhere(lax, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = lax().test_client()
    c = make_customer()
    attacker, owner = _from("10.2.0.1"), _from("10.2.0.2")
    for _ in range(5):
        assert_problem(_login(client, c.email, password="wrong password!!", **attacker), 401, "UNAUTHORIZED")
    assert_problem(_login(client, c.email, **attacker), 429, "RATE_LIMITED")
    assert _login(client, c.email, **owner).status_code == 200


def test_the_email_wide_lock_spares_a_trusted_device(lax, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = lax(login_email_max_failures=6).test_client()
    c = make_customer()
    _otp_on(client, c.email)
    cid = _challenge(client, c.email, device_id="owner-laptop")
    assert _answer(client, cid, otp_code(cid), trust_device=True).status_code == 200
    for i in range(6):  # spread over addresses: no address reaches its own limit
        assert _login(client, c.email, password="wrong password!!", **_from(f"10.3.0.{i}")).status_code == 401
    assert_problem(_login(client, c.email, **_from("10.3.1.1")), 429, "RATE_LIMITED")
    assert_problem(_login(client, c.email, device_id="unknown-device", **_from("10.3.1.1")), 429, "RATE_LIMITED")
    assert _login(client, c.email, device_id="owner-laptop", **_from("10.3.1.1")).status_code == 200
    # A trusted device id does not skip the password, nor its own address's lock.
    assert _login(client, c.email, password="wrong password!!", device_id="owner-laptop").status_code == 401


def test_unlock_user_and_an_admin_password_reset_clear_the_lock(lax, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    app = lax(login_email_max_failures=5)
    client, cli = app.test_client(), app.test_cli_runner()
    c = make_customer()
    for i in range(5):
        _login(client, c.email, password="wrong password!!", **_from(f"10.4.0.{i}"))
    assert_problem(_login(client, c.email), 429, "RATE_LIMITED")
    result = cli.invoke(args=["unlock-user", "--email", c.email.upper()])
    assert result.exit_code == 0, result.output
    assert _login(client, c.email).status_code == 200
    with sessions() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.entity_id == str(c.user.id))).all()
    assert "auth.login_unlocked" in actions

    email = f"admin.{uuid.uuid4().hex[:10]}@bank.local"
    assert cli.invoke(args=["create-admin", "--email", email, "--password", "first password 1"]).exit_code == 0
    for _ in range(5):
        _login(client, email, password="wrong password!!")
    assert_problem(_login(client, email, password="first password 1"), 429, "RATE_LIMITED")
    assert cli.invoke(args=["create-admin", "--email", email, "--password", "second password 2"]).exit_code == 0
    assert _login(client, email, password="second password 2").status_code == 200


# ---- item 10: revocations survive losing Redis ---------------------------------------------------


def test_revocations_survive_a_redis_flush(client, make_customer, redis_client) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    out, rotated, live = tokens(client, c.email), tokens(client, c.email), tokens(client, c.email)
    assert client.post(f"{API}/auth/logout", headers=bearer(out["access_token"])).status_code == 204
    assert client.post(f"{API}/auth/refresh", headers=bearer(rotated["refresh_token"])).status_code == 200
    # Redis restarts without persistence: every auth key it held is gone (only those: other tests share it).
    for key in redis_client.scan_iter("auth:*"):
        redis_client.delete(key)
    assert_problem(client.get(f"{API}/me", headers=bearer(out["access_token"])), 401, "UNAUTHORIZED")
    assert_problem(client.post(f"{API}/auth/refresh", headers=bearer(out["refresh_token"])), 401, "UNAUTHORIZED")
    # A spent refresh token is still spent: its reuse is caught and revokes its family.
    reuse = client.post(f"{API}/auth/refresh", headers=bearer(rotated["refresh_token"]))
    assert_problem(reuse, 401, "UNAUTHORIZED")
    assert_problem(client.get(f"{API}/me", headers=bearer(rotated["access_token"])), 401, "UNAUTHORIZED")
    assert client.get(f"{API}/me", headers=bearer(live["access_token"])).status_code == 200


# ---- item 9: /metrics not public in production, /docs without a CDN, accounts capped ---------------

STRONG = {
    "jwt_secret_key": "j" * 40 + uuid.uuid4().hex,
    "pin_pepper": "p" * 40 + uuid.uuid4().hex,
    "webhook_secrets_key": "w" * 40 + uuid.uuid4().hex,
}


def test_metrics_on_the_api_port_need_the_token_or_are_off_in_production(make_app) -> None:  # type: ignore[no-untyped-def]
    token = "m" * 40
    guarded = make_app(metrics_token=token).test_client()
    for path in ("/metrics", f"{API}/metrics"):
        assert_problem(guarded.get(path), 401, "UNAUTHORIZED")
        assert_problem(guarded.get(path, headers={"Authorization": f"Bearer {token}x"}), 401, "UNAUTHORIZED")
        ok = guarded.get(path, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and b"flask_http_request" in ok.data
    production = make_app(app_env="production", **STRONG).test_client()
    for path in ("/metrics", f"{API}/metrics"):
        r = production.get(path)
        assert_problem(r, 404, "NOT_FOUND")
        assert b"bank_" not in r.data and b"flask_http" not in r.data


def test_docs_load_swagger_ui_from_the_api_itself(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get(f"{API}/docs").get_data(as_text=True)
    assert "cdn." not in page and "https://" not in page
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert scripts and all(s.startswith(f"{API}/docs/assets/") for s in scripts), scripts
    for asset in scripts:
        with client.get(asset) as r:  # a file response: closed, or its file stays open
            assert r.status_code == 200 and len(r.data) > 1000, asset
    assert client.get(f"{API}/docs/assets/../../openapi.json").status_code == 404


def test_accounts_per_user_are_capped(make_app, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = make_app(max_accounts_per_user=3).test_client()
    c = make_customer()  # holds one account already
    h = bearer(tokens(client, c.email)["access_token"])
    opened = [client.post(f"{API}/accounts", json={"currency": "EUR"}, headers=h).status_code for _ in range(2)]
    assert opened == [201, 201]
    assert_problem(client.post(f"{API}/accounts", json={"currency": "USD"}, headers=h), 409, "CONFLICT")
    assert len(client.get(f"{API}/accounts", headers=h).json["items"]) == 3
