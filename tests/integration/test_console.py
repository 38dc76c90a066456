"""The operators' console (/console) through the Flask test client: admins only, CSRF on every
form, the cookie's flags, the headers, and each action through the same core services as the API."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.models import Account, AccountStatus, AuditLog, KycStatus, User
from core.webhooks import relay, service
from core.webhooks.models import DeliveryStatus, WebhookDelivery
from tests import factories

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no csrf_token on the page"
    return match.group(1) or match.group(2)


def console_login(client: Any, email: str, password: str = factories.PASSWORD) -> Any:
    page = client.get("/console/login")
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)})


@pytest.fixture
def admin(sessions) -> User:  # type: ignore[no-untyped-def]
    return factories.admin(sessions)


@pytest.fixture
def console(client, admin):  # type: ignore[no-untyped-def]
    r = console_login(client, admin.email)
    assert r.status_code == 302, r.text
    return client


def token_from(client: Any, path: str) -> str:
    return csrf_of(client.get(path).text)


def audit_rows(sessions, action: str, entity_id: Any) -> list[AuditLog]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action, AuditLog.entity_id == str(entity_id))))


# ---- login, cookie, headers ----------------------------------------------------------------


def test_login_page_markup_and_headers(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/console/login")
    assert r.status_code == 200
    for name in ("email", "password"):
        assert re.search(rf'<input[^>]*name="{name}"', r.text)
    assert re.search(r'<input[^>]*name="csrf_token"[^>]*type="hidden"|type="hidden"[^>]*name="csrf_token"', r.text)
    assert r.headers["X-Frame-Options"] == "DENY"
    csp = r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "<script>" not in r.text and "style=" not in r.text  # nothing inline for the CSP to refuse


def test_admin_login_sets_one_strict_httponly_cookie(client, admin) -> None:  # type: ignore[no-untyped-def]
    client.get("/console/login")
    r = console_login(client, admin.email)
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")
    cookies = r.headers.getlist("Set-Cookie")
    assert len(cookies) == 1, cookies
    cookie = cookies[0]
    assert cookie.startswith("bank_console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # test environment: plain HTTP
    page = client.get("/console/")
    assert page.status_code == 200
    assert 'id="backlog"' in page.text and 'id="sealer-lag"' in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_cookie_is_secure_outside_development(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        app_env="production",
        jwt_secret_key="j" * 40,
        pin_pepper="p" * 40,
        webhook_secrets_key="w" * 40,
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict"


def test_a_customer_cannot_log_in_nor_use_a_token(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    r = console_login(client, customer.email)
    assert r.status_code == 403
    assert "administrators only" in r.text
    assert client.get("/console/").status_code == 302  # no session was made
    token = client.post("/api/v1/auth/login", json={"email": customer.email, "password": factories.PASSWORD})
    bearer = {"Authorization": f"Bearer {token.json['access_token']}"}
    r = client.get("/console/", headers=bearer)
    assert r.status_code == 302 and "/console/login" in r.headers["Location"]


def test_login_without_csrf_token_is_refused(client, admin) -> None:  # type: ignore[no-untyped-def]
    client.get("/console/login")
    r = client.post("/console/login", data={"email": admin.email, "password": factories.PASSWORD})
    assert r.status_code == 400
    assert client.get("/console/").status_code == 302


def test_console_login_failures_lock_the_api_login(make_app, admin) -> None:  # type: ignore[no-untyped-def]
    app = make_app(login_max_failures=3)
    client = app.test_client()
    for _ in range(3):
        assert console_login(client, admin.email, "wrong password").status_code == 401
    r = client.post("/api/v1/auth/login", json={"email": admin.email, "password": factories.PASSWORD})
    assert r.status_code == 429  # the same lockout rows: the right password is refused too
    assert console_login(client, admin.email).status_code == 429


def test_idle_session_ends(console) -> None:  # type: ignore[no-untyped-def]
    with console.session_transaction("/console/") as state:
        state["admin"]["seen"] = time.time() - 16 * 60
    r = console.get("/console/")
    assert r.status_code == 302 and "/console/login" in r.headers["Location"]


def test_logout(console) -> None:  # type: ignore[no-untyped-def]
    r = console.post("/console/logout", data={"csrf_token": token_from(console, "/console/")})
    assert r.status_code == 302
    assert console.get("/console/").status_code == 302


# ---- KYC ----------------------------------------------------------------------------------


def test_kyc_queue_lists_and_approves(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    pending = make_customer(approved=False, pin=None)
    page = console.get("/console/kyc")
    assert pending.email in page.text and "Test" in page.text
    r = console.post(
        f"/console/users/{pending.user.id}/kyc", data={"decision": "APPROVE", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 302
    with sessions() as s:
        user = s.get_one(User, pending.user.id)
        assert user.kyc_status == KycStatus.APPROVED
        assert s.get_one(Account, pending.account.id).status == AccountStatus.ACTIVE
    (row,) = audit_rows(sessions, "kyc.approved", pending.user.id)
    assert row.actor_id == admin.id


def test_kyc_reject_with_reason(console, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    pending = make_customer(approved=False, pin=None)
    r = console.post(
        f"/console/users/{pending.user.id}/kyc",
        data={
            "decision": "REJECT",
            "reason": "documents unreadable",
            "csrf_token": token_from(console, "/console/kyc"),
        },
    )
    assert r.status_code == 302
    (row,) = audit_rows(sessions, "kyc.rejected", pending.user.id)
    assert row.details["reason"] == "documents unreadable"


def test_kyc_decision_without_csrf_is_refused(console, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    pending = make_customer(approved=False, pin=None)
    r = console.post(f"/console/users/{pending.user.id}/kyc", data={"decision": "APPROVE"})
    assert r.status_code == 400
    r = console.post(f"/console/users/{pending.user.id}/kyc", data={"decision": "APPROVE", "csrf_token": "forged"})
    assert r.status_code == 400
    with sessions() as s:
        assert s.get_one(User, pending.user.id).kyc_status == KycStatus.PENDING


def test_stored_html_is_escaped(console, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    from core.identity import users

    with sessions.begin() as s:
        users.register(
            s, email=f"x.{uuid.uuid4().hex[:8]}@example.com", password=factories.PASSWORD,
            full_name="<script>alert(1)</script>", currency="USD",
        )  # fmt: skip
    page = console.get("/console/kyc").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---- accounts -----------------------------------------------------------------------------


def test_freeze_and_unfreeze(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    path = f"/console/accounts/{customer.account.id}"
    page = console.get(path)
    assert 'data-action="freeze"' in page.text
    r = console.post(f"{path}/freeze", data={"reason": "fraud review", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 302
    with sessions() as s:
        assert s.get_one(Account, customer.account.id).status == AccountStatus.FROZEN
    (row,) = audit_rows(sessions, "account.frozen", customer.account.id)
    assert row.actor_id == admin.id and row.details["reason"] == "fraud review"
    page = console.get(path)
    assert 'data-action="unfreeze"' in page.text
    assert "account.frozen" in page.text and "fraud review" in page.text  # the history
    console.post(f"{path}/unfreeze", data={"reason": "cleared", "csrf_token": csrf_of(page.text)})
    with sessions() as s:
        assert s.get_one(Account, customer.account.id).status == AccountStatus.ACTIVE


def test_freeze_needs_a_reason_and_a_token(console, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    path = f"/console/accounts/{customer.account.id}"
    assert console.post(f"{path}/freeze", data={"reason": "x"}).status_code == 400
    console.post(
        f"{path}/freeze", data={"reason": "<script>alert(1)</script>", "csrf_token": token_from(console, path)}
    )
    page = console.get(path).text
    assert "<script>alert(1)</script>" not in page and "\\u003cscript\\u003e" in page  # inert in the history
    console.post(f"{path}/unfreeze", data={"reason": "ok", "csrf_token": token_from(console, path)})
    r = console.post(
        f"{path}/freeze", data={"reason": "", "csrf_token": token_from(console, path)}, follow_redirects=True
    )
    assert "A reason is required" in r.text
    with sessions() as s:
        assert s.get_one(Account, customer.account.id).status == AccountStatus.ACTIVE


def test_set_limits_calls_the_bank_limits_service(console, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    path = f"/console/accounts/{customer.account.id}"
    form = {
        "per_transfer": "5000",
        "daily_outgoing": "20000",
        "monthly_outgoing": "",
        "credit_limit": "0",
        "reason": "risk review",
        "csrf_token": token_from(console, path),
    }
    r = console.post(f"{path}/limits", data=form)
    assert r.status_code == 302
    with sessions() as s:
        account = s.get_one(Account, customer.account.id)
        assert (account.bank_per_transfer, account.bank_daily_outgoing, account.bank_monthly_outgoing) == (
            5000,
            20000,
            None,
        )
    (row,) = audit_rows(sessions, "account.limits_set", customer.account.id)
    assert row.details["reason"] == "risk review"


def test_set_limits_shows_the_schema_error_next_to_the_field(console, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    path = f"/console/accounts/{customer.account.id}"
    form = {"per_transfer": "lots", "reason": "x", "csrf_token": token_from(console, path)}
    r = console.post(f"{path}/limits", data=form)
    assert r.status_code == 422
    assert 'id="per_transfer-error"' in r.text
    assert not audit_rows(sessions, "account.limits_set", customer.account.id)
    assert console.post(f"{path}/limits", data={"per_transfer": "1", "reason": "x"}).status_code == 400


# ---- search, transfers --------------------------------------------------------------------


@pytest.mark.commits  # the sealer chains committed audit rows
def test_search_and_transfer_page_with_verified_proof(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    factories.fund(sessions, admin, customer.account, 1500)
    with sessions() as s:
        (entry_transfer_id,) = s.scalars(
            select(AuditLog.entity_id).where(AuditLog.entity_type == "transfer", AuditLog.actor_id == admin.id)
            .order_by(AuditLog.id.desc()).limit(1)
        )  # fmt: skip
    factories.seal_all(sessions)
    assert customer.email in console.get("/console/search", query_string={"q": customer.email}).text
    assert customer.email in console.get("/console/search", query_string={"q": customer.email[:-4]}).text  # prefix
    by_account = console.get("/console/search", query_string={"q": str(customer.account.id)}).text
    assert entry_transfer_id in by_account
    page = console.get(f"/console/transfers/{entry_transfer_id}").text
    assert "1500" in page and str(customer.account.id) in page
    assert "valid" in page and "INVALID" not in page and "DOES NOT MATCH" not in page
    assert 'class="proof"' in page and "proof.js" in page


# ---- webhooks -----------------------------------------------------------------------------


def test_retry_a_delivery(console, admin, make_customer, sessions, app) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    policy = app.extensions["bank"].policies.webhooks
    with sessions.begin() as s:
        owner = s.get_one(User, customer.user.id)
        created = service.create_endpoint(
            s, owner, url="https://hooks.example.com/bank", events=["transfer.completed"], description=None,
            policy=policy, resolve=lambda host, port: ["93.184.216.34"],
        )  # fmt: skip
    factories.fund(sessions, admin, customer.account, 100)
    now = datetime.now(UTC) + timedelta(seconds=1)
    # Relay until nothing is left: in a full run other tests' events may come first.
    relayed = 1
    while relayed:
        with sessions.begin() as s:
            relayed = relay.relay_events(s, now=now, queue_lease=timedelta(seconds=30)).events
    with sessions.begin() as s:
        delivery = s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == created.endpoint.id)).first()
        assert delivery is not None
        delivery.status = DeliveryStatus.FAILED
        delivery.queued_until = None
        delivery.next_attempt_at = None
        delivery_id = delivery.id
    assert "hooks.example.com/bank" in console.get("/console/webhooks").text
    page = console.get(f"/console/webhooks/{created.endpoint.id}")
    assert 'data-action="retry"' in page.text
    r = console.post(f"/console/deliveries/{delivery_id}/retry", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 302
    with sessions() as s:
        assert s.get_one(WebhookDelivery, delivery_id).status == DeliveryStatus.PENDING
    (row,) = audit_rows(sessions, "console.webhook_retry", delivery_id)
    assert row.actor_id == admin.id
    assert console.post(f"/console/deliveries/{delivery_id}/retry").status_code == 400


def test_console_is_not_in_the_openapi_document(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/api/v1/openapi.json").json
    assert not [p for p in spec["paths"] if "console" in p]


def test_search_by_reference_and_status(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    from core.transfers.deposit import deposit

    customer = make_customer()
    reference = f"invoice <b>{uuid.uuid4().hex[:8]}</b>"
    with sessions.begin() as s:
        accepted = deposit(s, admin_id=admin.id, account_id=customer.account.id, amount=700, currency="USD",
                           reference=reference, idempotency_key=str(uuid.uuid4()))  # fmt: skip
    page = console.get("/console/search", query_string={"q": reference}).text
    assert str(accepted.transfer.id) in page
    assert reference not in page and "invoice &lt;b&gt;" in page  # escaped
    page = console.get("/console/search", query_string={"q": reference, "status": "FAILED"}).text
    assert str(accepted.transfer.id) not in page
    # A status alone lists that status's transfers, newest first (the API's list).
    assert str(accepted.transfer.id) in console.get("/console/search", query_string={"status": "COMPLETED"}).text
    assert str(accepted.transfer.id) not in console.get("/console/search", query_string={"status": "FAILED"}).text


def test_a_page_of_an_unknown_row_is_404(console) -> None:  # type: ignore[no-untyped-def]
    unknown = uuid.uuid4()
    for kind in ("users", "accounts", "transfers", "webhooks"):
        r = console.get(f"/console/{kind}/{unknown}")
        assert r.status_code == 404 and "Not Found" in r.text, kind


def test_an_admin_with_otp_answers_the_code(client, admin, sessions) -> None:  # type: ignore[no-untyped-def]
    from tests.authflow import otp_code

    with sessions.begin() as s:
        s.get_one(User, admin.id).otp_enabled = True
    r = console_login(client, admin.email)
    assert r.status_code == 302 and r.headers["Location"].startswith("/console/login/otp")
    assert client.get("/console/").status_code == 302  # not signed in yet
    page = client.get("/console/login/otp")
    with client.session_transaction("/console/") as state:
        challenge_id = state["otp_challenge"]
    code = otp_code(challenge_id)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = client.post("/console/login/otp", data={"code": wrong, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 401
    assert client.post("/console/login/otp", data={"code": code}).status_code == 400  # no CSRF token
    r = client.post("/console/login/otp", data={"code": code, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")
    assert client.get("/console/").status_code == 200
    assert audit_rows(sessions, "auth.otp_failed", admin.id)  # the wrong code counted, as the API's do


def test_statement_download(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    factories.fund(sessions, admin, customer.account, 1234)
    page = console.get(f"/console/accounts/{customer.account.id}").text
    start = re.search(r'name="from" value="([^"]+)"', page)
    end = re.search(r'name="to" value="([^"]+)"', page)
    assert start and end
    r = console.get(f"/console/accounts/{customer.account.id}/statement", query_string={"from": start[1], "to": end[1]})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    assert "1234" in r.text
    r = console.get(f"/console/accounts/{customer.account.id}/statement", query_string={"from": "yesterday"})
    assert r.status_code == 302  # back to the account page with the problem


def test_errors_are_pages_without_a_trace(console, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from web.console import health

    r = console.get("/console/accounts/not-an-id")
    assert r.status_code == 404 and r.mimetype == "text/html" and "Not Found" in r.text

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(health, "measure", broken)
    r = console.get("/console/")
    assert r.status_code == 500 and r.mimetype == "text/html"
    assert "internal detail" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert "Content-Security-Policy" in r.headers


def test_console_login_has_the_api_logins_budget_per_address(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(rate_limit_key_prefix=f"test-{uuid.uuid4().hex}", rate_limit_login_ip="3 per minute")
    client = app.test_client()
    statuses = [console_login(client, f"nobody.{n}@example.com", "guess").status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    r = client.post("/console/login", data={"email": "another@example.com", "password": "guess"})
    assert r.status_code == 429 and r.mimetype == "text/html"


def test_search_by_metadata_shows_it_escaped(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    from core.models import Transfer
    from core.transfers.deposit import deposit

    customer = make_customer()
    value = f"<script>alert('{uuid.uuid4().hex[:8]}')</script>"
    with sessions.begin() as s:
        accepted = deposit(s, admin_id=admin.id, account_id=customer.account.id, amount=5, currency="USD",
                           reference=None, idempotency_key=str(uuid.uuid4()))  # fmt: skip
        s.get_one(Transfer, accepted.transfer.id).metadata_ = {"order": value}
        s.get_one(Account, customer.account.id).metadata_ = {"segment": "<i>vip</i>"}
    page = console.get("/console/search", query_string={"meta_key": "order", "meta_value": value}).text
    assert str(accepted.transfer.id) in page
    assert value not in page and "&lt;script&gt;" in page
    by_account = {"q": str(customer.account.id), "meta_key": "order", "meta_value": value}
    assert str(accepted.transfer.id) in console.get("/console/search", query_string=by_account).text
    other = {"meta_key": "order", "meta_value": "something else"}
    assert str(accepted.transfer.id) not in console.get("/console/search", query_string=other).text
    assert "&lt;script&gt;" in console.get(f"/console/transfers/{accepted.transfer.id}").text
    account_page = console.get(f"/console/accounts/{customer.account.id}").text
    assert "<i>vip</i>" not in account_page and "&lt;i&gt;vip&lt;/i&gt;" in account_page
    bad = console.get("/console/search", query_string={"meta_key": "k" * 41, "meta_value": "v"})
    assert bad.status_code == 200 and "Metadata:" in bad.text


def test_nul_characters_are_a_field_error_not_a_500(console, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    path = f"/console/accounts/{customer.account.id}"
    form = {"per_transfer": "1", "reason": "a\x00b", "csrf_token": token_from(console, path)}
    r = console.post(f"{path}/limits", data=form)
    assert r.status_code == 422 and "without NUL characters" in r.text
    r = console.post(f"{path}/freeze", data={"reason": "a\x00b", "csrf_token": token_from(console, path)})
    assert r.status_code == 302
    with sessions() as s:
        assert s.get_one(Account, customer.account.id).status == AccountStatus.ACTIVE
    page = console.get("/console/login")
    r = console.post("/console/login", data={"email": "a\x00@b.c", "password": "x", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 422


def test_every_page_sends_the_headers(console, make_customer) -> None:  # type: ignore[no-untyped-def]
    customer = make_customer()
    paths = [
        "/console/",
        "/console/kyc",
        "/console/search?q=x",
        "/console/webhooks",
        f"/console/users/{customer.user.id}",
        f"/console/accounts/{customer.account.id}",
        "/console/static/console.css",
        "/console/static/proof.js",
        "/console/accounts/not-an-id",
    ]
    for path in paths:
        r = console.get(path)
        assert r.status_code in (200, 404), path
        csp = r.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "default-src 'none'" in csp, path
        assert r.headers["X-Frame-Options"] == "DENY", path
        assert r.headers["Cache-Control"] == "no-store", path
        assert [c for c in r.headers.getlist("Set-Cookie") if not c.startswith("bank_console=")] == [], path
        if r.mimetype == "text/html":
            assert "<script>" not in r.text and " style=" not in r.text, path
        r.close()  # a static file is streamed from disk


def test_a_session_survives_a_jwt_key_rotation(make_app, admin) -> None:  # type: ignore[no-untyped-def]
    old_key, new_key = "o" * 40, "n" * 40
    before = make_app(jwt_secret_key=old_key).test_client()
    assert console_login(before, admin.email).status_code == 302
    cookie = before.get_cookie("bank_console", path="/console")
    assert cookie is not None
    after = make_app(jwt_secret_key=new_key, jwt_previous_secret_key=old_key).test_client()
    after.set_cookie("bank_console", cookie.value, path="/console")
    assert after.get("/console/").status_code == 200
    unrelated = make_app(jwt_secret_key=new_key).test_client()
    unrelated.set_cookie("bank_console", cookie.value, path="/console")
    assert unrelated.get("/console/").status_code == 302  # another key: the session is not honoured
