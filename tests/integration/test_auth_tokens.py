"""Token lifecycle, as an attacker tries it: forged, expired, alg:none, wrong-key and revoked tokens,
refresh rotation and reuse detection, logout, password change, key rotation."""

from __future__ import annotations

import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import func, select, update

from core.config import DEV_JWT_SECRET
from core.identity.models import RevokedToken
from core.models import AuditLog, Role, Transfer, User, UserStatus
from tests.authflow import API, PROBLEM, assert_problem, b64, bearer, jwt_parts, login, tokens
from tests.factories import PASSWORD, PIN, fund

ME = f"{API}/me"
NEW_PASSWORD = "a brand new long password"


def claims_for(user: User, **over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user.id),
        "jti": str(uuid.uuid4()),
        "type": "access",
        "fresh": False,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "fam": uuid.uuid4().hex,
        "gen": user.token_generation,
    }
    claims.update(over)
    return claims


def assert_401(r) -> None:  # type: ignore[no-untyped-def]
    assert_problem(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_tokens_carry_ids_only_and_name_their_key(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    t = tokens(client, c.email)
    assert t["token_type"] == "Bearer" and t["expires_in"] == 15 * 60
    for token, kind, lifetime in ((t["access_token"], "access", 15 * 60), (t["refresh_token"], "refresh", 7 * 86400)):
        header, payload = jwt_parts(token)
        assert header["alg"] == "HS256" and len(header["kid"]) == 16
        assert set(payload) <= {"sub", "jti", "type", "fresh", "iat", "nbf", "exp", "fam", "gen"}, payload
        assert payload["type"] == kind and payload["exp"] - payload["iat"] == lifetime
        text = str(payload)
        assert PASSWORD not in text and c.email not in text and "customer" not in text


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer " + "A" * 5000,
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
    ],
)
def test_missing_and_malformed_tokens_are_401_problems(client, authorization) -> None:  # type: ignore[no-untyped-def]
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_401(client.get(ME, headers=headers))


def test_forged_tokens_are_401(client, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    victim = make_customer()
    secret = settings.jwt_secret_key.get_secret_value()
    claims = claims_for(victim.user)
    forged = {
        "wrong key": pyjwt.encode(claims, "attacker-chosen-key-0123456789abcdef", algorithm="HS256"),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "alg None": f"{b64({'alg': 'None', 'typ': 'JWT'})}.{b64(claims)}.",
        "HS512 with the real key": _hs512(claims, secret),
        "kid pointing nowhere": pyjwt.encode(claims, "other-key-0123456789abcdef0123456789", headers={"kid": "x"}),
        "tampered payload": _swap_payload(pyjwt.encode(claims, secret), {**claims, "sub": str(uuid.uuid4())}),
        "expired": pyjwt.encode(claims_for(victim.user, exp=int(time.time()) - 5), secret),
        "not yet valid": pyjwt.encode(claims_for(victim.user, nbf=int(time.time()) + 3600), secret),
        "unknown user": pyjwt.encode(claims_for(victim.user, sub=str(uuid.uuid4())), secret),
        "sub not a uuid": pyjwt.encode(claims_for(victim.user, sub="admin"), secret),
        "refresh as access": pyjwt.encode(claims_for(victim.user, type="refresh"), secret),
        "no generation claim": pyjwt.encode({k: v for k, v in claims.items() if k != "gen"}, secret),
    }
    for name, token in forged.items():
        r = client.get(ME, headers=bearer(token))
        assert r.status_code == 401, name
        assert_401(r)
    # The same claims signed properly do work: the cases above failed for the reason given.
    assert client.get(ME, headers=bearer(pyjwt.encode(claims, secret))).status_code == 200


def _hs512(claims: dict[str, object], secret: str) -> str:
    with warnings.catch_warnings():  # PyJWT warns that the key is short for SHA-512: that is the point
        warnings.simplefilter("ignore")
        return pyjwt.encode(claims, secret, algorithm="HS512")


def _swap_payload(token: str, payload: dict[str, object]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64(payload)}.{signature}"


def test_expired_real_token_is_401_with_its_reason(make_app, make_customer) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    c = make_customer()
    with app.test_request_context():
        from flask_jwt_extended import create_access_token

        token = create_access_token(
            str(c.user.id), expires_delta=timedelta(seconds=-1), additional_claims={"fam": "f", "gen": 0}
        )
    body = assert_problem(app.test_client().get(ME, headers=bearer(token)), 401, "UNAUTHORIZED")
    assert body["detail"] == "token has expired"


def test_refresh_rotates_and_reuse_revokes_the_whole_family(client, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    first = tokens(client, c.email)
    other_login = tokens(client, c.email)  # another device: a separate family

    rotated = client.post(f"{API}/auth/refresh", headers=bearer(first["refresh_token"]))
    assert rotated.status_code == 200
    second = rotated.json
    assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
    assert jwt_parts(second["refresh_token"])[1]["fam"] == jwt_parts(first["refresh_token"])[1]["fam"]
    assert client.get(ME, headers=bearer(second["access_token"])).status_code == 200

    # An access token is not a refresh token, and the reverse.
    assert_401(client.post(f"{API}/auth/refresh", headers=bearer(second["access_token"])))
    assert_401(client.get(ME, headers=bearer(second["refresh_token"])))

    # Someone replays the spent refresh token: refused, and every token of that login dies.
    body = assert_problem(
        client.post(f"{API}/auth/refresh", headers=bearer(first["refresh_token"])), 401, "UNAUTHORIZED"
    )
    assert "revoked" in body["detail"]
    for token in (first["access_token"], second["access_token"]):
        assert_401(client.get(ME, headers=bearer(token)))
    assert_401(client.post(f"{API}/auth/refresh", headers=bearer(second["refresh_token"])))
    # The other login is untouched.
    assert client.get(ME, headers=bearer(other_login["access_token"])).status_code == 200
    assert client.post(f"{API}/auth/refresh", headers=bearer(other_login["refresh_token"])).status_code == 200
    with sessions() as s:
        assert s.scalar(
            select(AuditLog).where(AuditLog.action == "auth.refresh_reused", AuditLog.entity_id == str(c.user.id))
        )


def test_logout_revokes_the_access_token_and_its_refresh_token(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    t = tokens(client, c.email)
    other = tokens(client, c.email)
    r = client.post(f"{API}/auth/logout", headers=bearer(t["access_token"]))
    assert r.status_code == 204 and r.data == b""
    assert_401(client.get(ME, headers=bearer(t["access_token"])))
    assert_401(client.post(f"{API}/auth/refresh", headers=bearer(t["refresh_token"])))
    assert_401(client.post(f"{API}/auth/logout", headers=bearer(t["access_token"])))
    assert client.get(ME, headers=bearer(other["access_token"])).status_code == 200


def test_denylist_entries_expire_with_the_tokens(client, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    t = tokens(client, c.email)
    client.post(f"{API}/auth/logout", headers=bearer(t["access_token"]))
    _, payload = jwt_parts(t["access_token"])
    with sessions() as s:
        rows = {r.kind: r for r in s.scalars(select(RevokedToken).where(
            RevokedToken.token_id.in_([payload["jti"], payload["fam"]])))}  # fmt: skip
    now = datetime.now(UTC)
    assert timedelta(0) < rows["access"].expires_at - now <= timedelta(minutes=15, seconds=2)
    assert timedelta(days=6) < rows["family"].expires_at - now <= timedelta(days=7, seconds=2)


def test_password_change_revokes_every_token(client, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    a, b = tokens(client, c.email), tokens(client, c.email)
    url = f"{ME}/password"
    h = bearer(a["access_token"])
    wrong = client.put(url, json={"current_password": "not my password", "new_password": NEW_PASSWORD}, headers=h)
    assert_problem(wrong, 403, "FORBIDDEN")
    short = client.put(url, json={"current_password": PASSWORD, "new_password": "short"}, headers=h)
    assert "new_password" in assert_problem(short, 422, "VALIDATION_ERROR")["errors"]
    assert client.get(ME, headers=h).status_code == 200  # failures revoke nothing

    ok = client.put(url, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=h)
    assert ok.status_code == 204
    for t in (a, b):
        assert_401(client.get(ME, headers=bearer(t["access_token"])))
        assert_401(client.post(f"{API}/auth/refresh", headers=bearer(t["refresh_token"])))
    assert_problem(login(client, c.email), 401, "UNAUTHORIZED")
    fresh = tokens(client, c.email, NEW_PASSWORD)  # issued right after the change: valid
    assert client.get(ME, headers=bearer(fresh["access_token"])).status_code == 200
    with sessions() as s:
        actions = set(s.scalars(select(AuditLog.action).where(AuditLog.entity_id == str(c.user.id))))
    assert {"password.change_failed", "password.changed"} <= actions


def test_wrong_current_passwords_count_toward_the_login_lockout(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    h = bearer(tokens(client, c.email)["access_token"])
    body = {"current_password": "guess guess guess", "new_password": NEW_PASSWORD}
    codes = [client.put(f"{ME}/password", json=body, headers=h).status_code for _ in range(5)]
    assert codes == [403] * 5
    locked = client.put(f"{ME}/password", json={**body, "current_password": PASSWORD}, headers=h)
    assert_problem(locked, 429, "RATE_LIMITED")
    assert_problem(login(client, c.email), 429, "RATE_LIMITED")


def test_role_and_status_are_read_from_the_database_on_every_call(client, sessions) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import admin

    boss = admin(sessions)
    h = bearer(tokens(client, boss.email)["access_token"])
    assert client.get(f"{API}/admin/users", headers=h).status_code == 200
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == boss.id).values(role=Role.CUSTOMER))
    assert_problem(client.get(f"{API}/admin/users", headers=h), 403, "FORBIDDEN")


def test_key_rotation_keeps_old_tokens_valid_until_they_expire(make_app, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    old_key, new_key = DEV_JWT_SECRET, "the-new-signing-key-0123456789abcdef0123"
    before = make_app(jwt_secret_key=old_key).test_client()
    old = tokens(before, c.email)

    rotated = make_app(jwt_secret_key=new_key, jwt_previous_secret_key=old_key).test_client()
    assert rotated.get(ME, headers=bearer(old["access_token"])).status_code == 200
    renewed = rotated.post(f"{API}/auth/refresh", headers=bearer(old["refresh_token"]))
    assert renewed.status_code == 200
    new_header, _ = jwt_parts(renewed.json["access_token"])
    assert new_header["kid"] != jwt_parts(old["access_token"])[0]["kid"]
    pyjwt.decode(renewed.json["access_token"], new_key, algorithms=["HS256"])  # signed with the new key

    # Once the previous key is dropped, tokens signed with it stop working; new ones go on.
    after = make_app(jwt_secret_key=new_key).test_client()
    assert_401(after.get(ME, headers=bearer(old["access_token"])))
    assert after.get(ME, headers=bearer(renewed.json["access_token"])).status_code == 200
    # A token signed with the new key but claiming the old key's kid is still checked by signature.
    forged = pyjwt.encode(
        claims_for(c.user), "attacker-key-0123456789abcdef0123456789", headers=jwt_parts(old["access_token"])[0]
    )
    assert_401(rotated.get(ME, headers=bearer(forged)))


def test_every_401_is_problem_json(client) -> None:  # type: ignore[no-untyped-def]
    for method, path in (("get", ME), ("post", f"{API}/auth/refresh"), ("post", f"{API}/auth/logout")):
        r = getattr(client, method)(path, headers={"Authorization": "Bearer x.y.z"})
        assert r.status_code == 401 and r.headers["Content-Type"] == PROBLEM


def test_suspended_user_tokens_stop_working(client, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]

    c = make_customer()
    h = bearer(tokens(client, c.email)["access_token"])
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == c.user.id).values(status=UserStatus.SUSPENDED))
    assert_401(client.get(ME, headers=h))
    assert_problem(login(client, c.email), 401, "UNAUTHORIZED")


# ---- POST /transfers checks the token inside its accept statement --------------------------------


def _transfer_attempts(alice, bob):  # type: ignore[no-untyped-def]
    """(body, Idempotency-Key) pairs: one the API accepts from a live token, and four it refuses."""
    good = {"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
            "amount": 1, "currency": "USD", "pin": PIN}  # fmt: skip
    return [
        (good, str(uuid.uuid4())),  # 202
        (good, None),  # 400 IDEMPOTENCY_KEY_REQUIRED
        ({**good, "amount": "lots"}, str(uuid.uuid4())),  # 422
        ({**good, "pin": "0000"}, str(uuid.uuid4())),  # 403 INVALID_PIN
        (
            {**good, "source_account_id": str(bob.account.id), "destination_account_id": str(alice.account.id)},
            str(uuid.uuid4()),
        ),  # 404: not the caller's account
    ]


def _post_transfer(client, token: str, body, key):  # type: ignore[no-untyped-def]
    headers = {**bearer(token), **({"Idempotency-Key": key} if key else {})}
    return client.post(f"{API}/transfers", json=body, headers=headers)


def _dead_tokens(client, make_customer, sessions, alice):  # type: ignore[no-untyped-def]
    """Tokens of ``alice`` that are not live, each made so in its own way."""
    logged_out = tokens(client, alice.email)
    assert client.post(f"{API}/auth/logout", headers=bearer(logged_out["access_token"])).status_code == 204
    reused = tokens(client, alice.email)
    assert client.post(f"{API}/auth/refresh", headers=bearer(reused["refresh_token"])).status_code == 200
    assert client.post(f"{API}/auth/refresh", headers=bearer(reused["refresh_token"])).status_code == 401
    yield "logged out", logged_out["access_token"]
    yield "family revoked by a reused refresh token", reused["access_token"]
    yield "a refresh token", tokens(client, alice.email)["refresh_token"]
    yield "expired", pyjwt.encode(claims_for(alice.user, exp=int(time.time()) - 5), DEV_JWT_SECRET)
    yield "signed with another key", pyjwt.encode(claims_for(alice.user), "attacker-key-0123456789abcdef0123456789")
    yield "without a family", pyjwt.encode(claims_for(alice.user, fam=None), DEV_JWT_SECRET)
    yield "of a user that does not exist", pyjwt.encode(claims_for(alice.user, sub=str(uuid.uuid4())), DEV_JWT_SECRET)
    before_change = tokens(client, alice.email)["access_token"]
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == alice.user.id).values(token_generation=User.token_generation + 1))
    yield "issued before a password change", before_change
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == alice.user.id).values(status=UserStatus.SUSPENDED))
    yield (
        "of a suspended user",
        pyjwt.encode(claims_for(alice.user, gen=alice.user.token_generation + 1), DEV_JWT_SECRET),
    )


def test_transfers_answer_a_token_that_is_not_live_401_before_anything_else(  # type: ignore[no-untyped-def]
    client, make_customer, sessions, admin_user
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    live = tokens(client, alice.email)["access_token"]
    answers = [_post_transfer(client, live, body, key).status_code for body, key in _transfer_attempts(alice, bob)]
    assert answers == [202, 400, 422, 403, 404]
    seen = 0
    for why, token in _dead_tokens(client, make_customer, sessions, alice):
        for body, key in _transfer_attempts(alice, bob):
            r = _post_transfer(client, token, body, key)
            assert r.status_code == 401, (why, body, key, r.get_json())
            assert_401(r)
        seen += 1
    assert seen == 9
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Transfer).where(Transfer.initiated_by == alice.user.id)) == 1
