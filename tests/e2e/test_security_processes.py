"""Security state is shared by every API process: logout, lockouts, rate limits and OTP challenges
hold across two separate gunicorn processes (and the session's own API)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools import processes
from tests import factories
from tests.authflow import API, assert_problem, bearer, otp_code

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[httpx.Client]]:
    """Two more API processes (one gunicorn worker each) sharing a small registration limit."""
    env = {"RATE_LIMIT_REGISTER": "3 per minute", "RATE_LIMIT_KEY_PREFIX": f"e2e-{uuid.uuid4().hex}"}
    ports = {name: processes.free_port() for name in ("a", "b")}
    with ThreadPoolExecutor(2) as boot:  # side by side: each start waits for its API to answer
        starting = [
            boot.submit(processes.start_api, env, tmp_path_factory.mktemp(f"api-{name}"), ROOT, port, workers=1)
            for name, port in ports.items()
        ]
    procs = [started.result() for started in starting]
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", timeout=30) for port in ports.values()]
    yield clients
    for client, proc in zip(clients, procs, strict=True):
        client.close()
        proc.stop()


def login(client: httpx.Client, email: str, password: str = factories.PASSWORD, **extra: object) -> httpx.Response:
    return client.post("/auth/login", json={"email": email, "password": password, **extra})


def test_logout_in_one_process_is_logout_in_all(apis, api_url, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    a, b = apis
    c = factories.customer(sessions, settings)
    t = login(a, c.email).json()
    assert b.get("/me", headers=bearer(t["access_token"])).status_code == 200
    assert b.post("/auth/logout", headers=bearer(t["access_token"])).status_code == 204
    with httpx.Client(base_url=f"{api_url}{API}") as session_api:
        for client in (a, b, session_api):
            assert_problem(client.get("/me", headers=bearer(t["access_token"])), 401, "UNAUTHORIZED")
            assert_problem(client.post("/auth/refresh", headers=bearer(t["refresh_token"])), 401, "UNAUTHORIZED")


def test_refresh_reuse_is_caught_by_another_process(apis, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    a, b = apis
    c = factories.customer(sessions, settings)
    t = login(a, c.email).json()
    rotated = a.post("/auth/refresh", headers=bearer(t["refresh_token"])).json()
    assert_problem(b.post("/auth/refresh", headers=bearer(t["refresh_token"])), 401, "UNAUTHORIZED")
    assert_problem(a.get("/me", headers=bearer(rotated["access_token"])), 401, "UNAUTHORIZED")


def test_sixth_login_refused_across_processes_even_when_right(apis, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    a, b = apis
    c = factories.customer(sessions, settings)
    codes = [login((a, b)[i % 2], c.email, "wrong password!!").status_code for i in range(5)]
    assert codes == [401] * 5
    for client in (a, b):
        r = login(client, c.email)
        assert_problem(r, 429, "RATE_LIMITED")
        assert int(r.headers["Retry-After"]) > 0


def test_sixth_pin_refused_across_processes_even_when_right(apis, sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    a, b = apis
    alice, bob = factories.customer(sessions, settings), factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, alice.account, 100)
    h = bearer(login(a, alice.email).json()["access_token"])

    def send(client: httpx.Client, pin: str) -> httpx.Response:
        body = {
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 1,
            "currency": "USD",
            "pin": pin,
        }
        return client.post("/transfers", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})

    assert [send((a, b)[i % 2], "0000").status_code for i in range(5)] == [403, 403, 403, 403, 423]
    for client in (a, b):
        assert_problem(send(client, factories.PIN), 423, "PIN_LOCKED")


def test_rate_limit_is_counted_once_for_all_processes(apis) -> None:  # type: ignore[no-untyped-def]
    a, b = apis

    def register(client: httpx.Client) -> httpx.Response:
        email = f"rl.{uuid.uuid4().hex[:10]}@example.com"
        return client.post("/auth/register", json={"email": email, "password": factories.PASSWORD, "full_name": "R"})

    assert [register(c).status_code for c in (a, b, a)] == [201, 201, 201]
    r = register(b)
    assert_problem(r, 429, "RATE_LIMITED")
    assert 0 < int(r.headers["Retry-After"]) <= 60


def test_otp_challenge_from_one_process_is_answered_in_another(apis, sessions, settings) -> None:  # type: ignore[no-untyped-def]
    a, b = apis
    c = factories.customer(sessions, settings)
    a.post("/me/otp", json={"enabled": True}, headers=bearer(login(a, c.email).json()["access_token"]))
    cid = assert_problem(login(a, c.email, device_id="laptop"), 401, "OTP_REQUIRED")["challenge_id"]
    ok = b.post("/auth/otp/verify", json={"challenge_id": cid, "code": otp_code(cid), "trust_device": True})
    assert ok.status_code == 200
    assert login(b, c.email, device_id="laptop").status_code == 200  # trusted everywhere now
