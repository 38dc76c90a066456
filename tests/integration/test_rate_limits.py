"""Rate limits (429 RATE_LIMITED + Retry-After, counted in Redis) and the login lockout (Postgres)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import update

from core.identity.lockout import email_digest
from core.identity.models import LoginThrottle
from tests.authflow import API, assert_problem, bearer, login, tokens
from tests.factories import PASSWORD, PIN, fund


@pytest.fixture
def limited(make_app):  # type: ignore[no-untyped-def]
    """An app with small limits and a key prefix of its own, so no other test shares its counters."""

    def make(**limits: str):  # type: ignore[no-untyped-def]
        return make_app(rate_limit_key_prefix=f"test-{uuid.uuid4().hex}", **limits).test_client()

    return make


def assert_rate_limited(r) -> None:  # type: ignore[no-untyped-def]
    assert_problem(r, 429, "RATE_LIMITED")
    assert 0 < int(r.headers["Retry-After"]) <= 60


def test_login_per_ip(limited, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_login_ip="3 per minute")
    people = [make_customer() for _ in range(4)]
    assert [login(client, p.email).status_code for p in people[:3]] == [200, 200, 200]
    assert_rate_limited(login(client, people[3].email))
    # Another client address has its own budget.
    elsewhere = client.post(f"{API}/auth/login", json={"email": people[3].email, "password": PASSWORD},
                            environ_base={"REMOTE_ADDR": "10.9.8.7"})  # fmt: skip
    assert elsewhere.status_code == 200


def test_login_per_account_from_any_address(limited, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_login_account="2 per minute")
    c, other = make_customer(), make_customer()
    for i in range(2):
        r = client.post(f"{API}/auth/login", json={"email": c.email, "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": f"10.0.0.{i}"})  # fmt: skip
        assert r.status_code == 200
    spread = client.post(f"{API}/auth/login", json={"email": c.email.upper(), "password": PASSWORD},
                         environ_base={"REMOTE_ADDR": "10.0.0.99"})  # fmt: skip
    assert_rate_limited(spread)
    assert login(client, other.email).status_code == 200


def test_registration_per_ip(limited) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_register="2 per minute")

    def register():  # type: ignore[no-untyped-def]
        email = f"r.{uuid.uuid4().hex[:10]}@example.com"
        return client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD, "full_name": "R"})

    assert [register().status_code for _ in range(2)] == [201, 201]
    assert_rate_limited(register())


def test_otp_verify_per_ip(limited) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_otp_verify="3 per minute")
    codes = [
        client.post(f"{API}/auth/otp/verify", json={"challenge_id": "nope", "code": "123456"}).status_code
        for _ in range(3)
    ]
    assert codes == [401, 401, 401]
    assert_rate_limited(client.post(f"{API}/auth/otp/verify", json={"challenge_id": "nope", "code": "123456"}))


def test_transfers_per_user(limited, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_transfers="2 per minute")
    alice, bob, carol = make_customer(), make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    fund(sessions, admin_user, carol.account, 1_000)

    def send(payer, token: str):  # type: ignore[no-untyped-def]
        body = {
            "source_account_id": str(payer.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 1,
            "currency": "USD",
            "pin": "0000",  # wrong on purpose: nothing is queued, the attempt still counts
        }
        return client.post(
            f"{API}/transfers", json=body, headers={**bearer(token), "Idempotency-Key": str(uuid.uuid4())}
        )

    alice_token = tokens(client, alice.email)["access_token"]
    assert [send(alice, alice_token).status_code for _ in range(2)] == [403, 403]
    assert_rate_limited(send(alice, alice_token))
    # Carol, from the same address, is not slowed down by alice.
    assert send(carol, tokens(client, carol.email)["access_token"]).status_code == 403
    # A forged token cannot spend (or dodge into) someone else's budget: it is counted by address, then 401.
    assert_problem(send(carol, "forged.token.value"), 401, "UNAUTHORIZED")


def test_rate_limit_headers_on_limited_endpoints(limited, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_login_ip="5 per minute")
    r = login(client, make_customer().email)
    assert r.headers["X-RateLimit-Limit"] == "5" and r.headers["X-RateLimit-Remaining"] == "4"


# ---- login lockout (Postgres: holds across processes and restarts) ---------------------------


def test_sixth_login_is_refused_even_with_the_right_password(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    for _ in range(5):
        assert_problem(login(client, c.email, password="wrong password!!"), 401, "UNAUTHORIZED")
    r = login(client, c.email)
    assert_problem(r, 429, "RATE_LIMITED")
    assert 14 * 60 < int(r.headers["Retry-After"]) <= 15 * 60


def test_unknown_email_locks_the_same_way(client) -> None:  # type: ignore[no-untyped-def]
    """No enumeration through the lockout: an unregistered email answers exactly like a real one."""
    email = f"ghost.{uuid.uuid4().hex[:8]}@example.com"
    codes = [login(client, email, password="wrong password!!").status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_a_successful_login_resets_the_count(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    for _ in range(2):
        for _ in range(4):
            login(client, c.email, password="wrong password!!")
        assert login(client, c.email).status_code == 200


def test_lock_ends_and_old_failures_fall_out_of_the_window(client, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    for _ in range(5):
        login(client, c.email, password="wrong password!!")
    assert login(client, c.email).status_code == 429
    digest = email_digest(c.email)
    with sessions.begin() as s:  # 15 minutes pass
        s.execute(update(LoginThrottle).where(LoginThrottle.email_digest == digest)
                  .values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    assert login(client, c.email).status_code == 200
    for _ in range(4):
        login(client, c.email, password="wrong password!!")
    with sessions.begin() as s:  # these 4 failures are now older than the window
        s.execute(update(LoginThrottle).where(LoginThrottle.email_digest == digest)
                  .values(first_failed_at=datetime.now(UTC) - timedelta(minutes=16)))  # fmt: skip
    assert login(client, c.email, password="wrong password!!").status_code == 401
    assert login(client, c.email).status_code == 200


def test_sixth_pin_attempt_is_refused_even_when_right(client, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    h = bearer(tokens(client, alice.email)["access_token"])

    def send(pin: str) -> int:
        body = {
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 1,
            "currency": "USD",
            "pin": pin,
        }
        return client.post(
            f"{API}/transfers", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())}
        ).status_code

    assert [send("0000") for _ in range(5)] == [403, 403, 403, 403, 423]
    assert send(PIN) == 423


def test_a_token_signed_with_another_key_spends_nobody_s_budget(limited, make_customer) -> None:  # type: ignore[no-untyped-def]
    client = limited(rate_limit_transfers="1 per minute")
    alice, bob = make_customer(), make_customer()
    now = datetime.now(UTC)
    claims = {"sub": str(alice.user.id), "type": "access", "jti": "j", "fam": "f", "gen": 0, "iat": now}
    forged = pyjwt.encode({**claims, "exp": now + timedelta(minutes=5)}, "x" * 48, algorithm="HS256")
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 1,
        "currency": "USD",
        "pin": "0000",
    }

    def send(token: str):  # type: ignore[no-untyped-def]
        headers = {**bearer(token), "Idempotency-Key": str(uuid.uuid4())}
        return client.post(f"{API}/transfers", json=body, headers=headers)

    assert_problem(send(forged), 401, "UNAUTHORIZED")
    # Alice's one transfer a minute is still hers: the forged token was counted by address.
    assert send(tokens(client, alice.email)["access_token"]).status_code == 403  # the wrong PIN, not 429
