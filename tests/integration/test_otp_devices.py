"""OTP and trusted devices: codes are hashed in Redis, single use, 5 tries, short-lived; devices can be revoked."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import select

from core.identity.models import TrustedDevice
from core.models import AuditLog
from tests.authflow import API, assert_problem, bearer, login, otp_code, otp_message, tokens
from tests.factories import PASSWORD
from tests.waits import wait_for

VERIFY = f"{API}/auth/otp/verify"


@pytest.fixture
def otp_user(client, make_customer):  # type: ignore[no-untyped-def]
    c = make_customer()
    h = bearer(tokens(client, c.email)["access_token"])
    r = client.post(f"{API}/me/otp", json={"enabled": True}, headers=h)
    assert r.status_code == 200 and r.json["otp_enabled"] is True and r.json["id"] == str(c.user.id)
    return c


def challenge(client, email: str, **extra: object) -> str:  # type: ignore[no-untyped-def]
    body = assert_problem(login(client, email, **extra), 401, "OTP_REQUIRED")
    assert isinstance(body["challenge_id"], str) and len(body["challenge_id"]) >= 32
    return str(body["challenge_id"])


def verify(client, challenge_id: str, code: str, **extra: object):  # type: ignore[no-untyped-def]
    return client.post(VERIFY, json={"challenge_id": challenge_id, "code": code, **extra})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_otp_login_end_to_end_and_what_is_stored(client, otp_user, redis_client) -> None:  # type: ignore[no-untyped-def]
    cid = challenge(client, otp_user.email)
    message = otp_message(cid)
    code = message["code"]
    assert set(message) == {"user_id", "email", "purpose", "code", "challenge_id", "sent_at"}
    assert message["user_id"] == str(otp_user.user.id) and message["email"] == otp_user.email
    assert message["purpose"] == "login" and len(code) == 6 and code.isdigit()

    # Redis holds an HMAC of the code, never the code, and the challenge expires (5 minutes).
    stored = {k.decode(): v.decode() for k, v in redis_client.hgetall(f"otp:challenge:{cid}").items()}
    assert code not in stored.values() and all(code not in v for v in stored.values())
    assert len(stored["code_mac"]) == 64 and stored["attempts"] == "0"
    assert 0 < redis_client.ttl(f"otp:challenge:{cid}") <= 300

    assert_problem(verify(client, cid, wrong(code)), 401, "INVALID_OTP")
    ok = verify(client, cid, code)
    assert ok.status_code == 200 and {"access_token", "refresh_token"} <= set(ok.json)
    assert client.get(f"{API}/me", headers=bearer(ok.json["access_token"])).status_code == 200
    # Single use: the same code cannot be replayed.
    assert_problem(verify(client, cid, code), 401, "INVALID_OTP")
    assert not redis_client.exists(f"otp:challenge:{cid}")


def test_five_wrong_codes_end_the_challenge_and_count_as_failed_logins(client, otp_user) -> None:  # type: ignore[no-untyped-def]
    cid = challenge(client, otp_user.email)
    code = otp_code(cid)
    for _ in range(5):
        assert_problem(verify(client, cid, wrong(code)), 401, "INVALID_OTP")
    assert_problem(verify(client, cid, code), 401, "INVALID_OTP")  # the right code, too late
    # Five failed codes are five failed logins: no fresh challenge to guess against for a while.
    assert_problem(login(client, otp_user.email), 429, "RATE_LIMITED")


def test_a_new_challenge_does_not_reset_the_failure_count(client, otp_user) -> None:  # type: ignore[no-untyped-def]
    """Otherwise an attacker with the password could guess 4 codes per challenge forever."""
    for _ in range(2):
        cid = challenge(client, otp_user.email)
        code = otp_code(cid)
        for _ in range(2):
            assert_problem(verify(client, cid, wrong(code)), 401, "INVALID_OTP")
    cid = challenge(client, otp_user.email)
    assert_problem(verify(client, cid, wrong(otp_code(cid))), 401, "INVALID_OTP")  # 5th failure
    assert_problem(login(client, otp_user.email), 429, "RATE_LIMITED")


def test_expired_challenge_is_refused(make_app, make_customer, redis_client) -> None:  # type: ignore[no-untyped-def]
    app = make_app(otp_ttl_seconds=1)
    client = app.test_client()
    c = make_customer()
    h = bearer(tokens(client, c.email)["access_token"])
    client.post(f"{API}/me/otp", json={"enabled": True}, headers=h)
    cid = challenge(client, c.email)
    code = otp_code(cid)
    # Redis expires it after the TTL.
    wait_for("the challenge expiring", lambda: not redis_client.exists(f"otp:challenge:{cid}"), timeout=5)
    assert_problem(verify(client, cid, code), 401, "INVALID_OTP")


def test_a_code_only_answers_its_own_challenge(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, mallory = make_customer(), make_customer()
    for c in (alice, mallory):
        client.post(f"{API}/me/otp", json={"enabled": True}, headers=bearer(tokens(client, c.email)["access_token"]))
    alice_cid, mallory_cid = challenge(client, alice.email), challenge(client, mallory.email)
    # Mallory knows her own code and somehow alice's challenge id: her code does not open it.
    assert_problem(verify(client, alice_cid, otp_code(mallory_cid)), 401, "INVALID_OTP")
    assert_problem(verify(client, "not-a-real-challenge", otp_code(mallory_cid)), 401, "INVALID_OTP")
    ok = verify(client, alice_cid, otp_code(alice_cid))
    assert ok.status_code == 200
    me = client.get(f"{API}/me", headers=bearer(ok.json["access_token"])).json
    assert me["id"] == str(alice.user.id)


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 456", "", "١٢٣٤٥٦"])
def test_malformed_codes_are_422(client, code) -> None:  # type: ignore[no-untyped-def]
    r = client.post(VERIFY, json={"challenge_id": "x", "code": code})
    assert "code" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"]


def test_trusted_device_skips_otp_until_revoked(client, otp_user, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    phone = f"phone-{uuid.uuid4().hex[:8]}"
    cid = challenge(client, otp_user.email, device_id=phone)
    ok = verify(client, cid, otp_code(cid), trust_device=True)
    assert ok.status_code == 200
    h = bearer(ok.json["access_token"])

    listed = client.get(f"{API}/me/devices", headers=h).json["items"]
    assert [d["device_id"] for d in listed] == [phone]
    device = listed[0]
    assert set(device) == {"id", "device_id", "trusted_at", "last_seen_at"}

    # The trusted device logs in with the password alone, and its last_seen_at moves.
    again = login(client, otp_user.email, device_id=phone)
    assert again.status_code == 200
    seen = client.get(f"{API}/me/devices", headers=h).json["items"][0]
    assert seen["trusted_at"] == device["trusted_at"] and seen["last_seen_at"] > device["last_seen_at"]
    # Another device, or none, still needs a code; a wrong password is still a plain 401.
    challenge(client, otp_user.email, device_id="laptop")
    challenge(client, otp_user.email)
    assert_problem(login(client, otp_user.email, password="wrong password!!", device_id=phone), 401, "UNAUTHORIZED")

    # Someone else cannot delete it (404, and it stays)...
    intruder = bearer(tokens(client, make_customer().email)["access_token"])
    assert_problem(client.delete(f"{API}/me/devices/{device['id']}", headers=intruder), 404, "NOT_FOUND")
    assert client.get(f"{API}/me/devices", headers=h).json["items"][0]["id"] == device["id"]
    # ...but its owner can, and then the device needs a code again.
    assert client.delete(f"{API}/me/devices/{device['id']}", headers=h).status_code == 204
    assert client.get(f"{API}/me/devices", headers=h).json["items"] == []
    challenge(client, otp_user.email, device_id=phone)
    assert_problem(client.delete(f"{API}/me/devices/{device['id']}", headers=h), 404, "NOT_FOUND")

    with sessions() as s:
        actions = [a for a in s.scalars(select(AuditLog.action).where(AuditLog.entity_id == str(otp_user.user.id)))]
        details = " ".join(str(d) for d in s.scalars(select(AuditLog.details)))
    assert {"otp.enabled", "auth.login_needs_otp", "auth.otp_verified", "device.trusted", "device.revoked"} <= set(
        actions
    )
    assert phone not in details  # device ids (half of what skips OTP) stay out of the audit trail


def test_without_trust_device_nothing_is_remembered(client, otp_user, sessions) -> None:  # type: ignore[no-untyped-def]
    cid = challenge(client, otp_user.email, device_id="tablet")
    assert verify(client, cid, otp_code(cid)).status_code == 200
    challenge(client, otp_user.email, device_id="tablet")
    with sessions() as s:
        assert s.scalars(select(TrustedDevice).where(TrustedDevice.user_id == otp_user.user.id)).all() == []


def test_otp_off_means_password_only(client, otp_user) -> None:  # type: ignore[no-untyped-def]
    cid = challenge(client, otp_user.email)
    h = bearer(verify(client, cid, otp_code(cid)).json["access_token"])
    # A stolen access token alone cannot drop the second factor: the password is needed.
    assert_problem(client.post(f"{API}/me/otp", json={"enabled": False}, headers=h), 422, "VALIDATION_ERROR")
    wrong_pw = client.post(f"{API}/me/otp", json={"enabled": False, "password": "not the password"}, headers=h)
    assert_problem(wrong_pw, 403, "FORBIDDEN")
    assert client.get(f"{API}/me", headers=h).json["otp_enabled"] is True
    r = client.post(f"{API}/me/otp", json={"enabled": False, "password": PASSWORD}, headers=h)
    assert r.status_code == 200 and r.json["otp_enabled"] is False
    assert login(client, otp_user.email).status_code == 200
    assert_problem(client.post(f"{API}/me/otp", json={"enabled": "yes"}, headers=h), 422, "VALIDATION_ERROR")


def test_log_notifier_never_writes_the_code(make_app, make_customer, caplog) -> None:  # type: ignore[no-untyped-def]
    app = make_app(notifier="log")
    logging.getLogger().addHandler(caplog.handler)  # create_app() replaced the root handlers
    client = app.test_client()
    c = make_customer()
    client.post(f"{API}/me/otp", json={"enabled": True}, headers=bearer(tokens(client, c.email)["access_token"]))
    cid = challenge(client, c.email)
    sent = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("challenge_id") == cid]
    assert sent and sent[0]["event"] == "otp_sent" and sent[0]["user_id"] == str(c.user.id)
    assert "code" not in sent[0]
