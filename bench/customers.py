"""Funded customers, set up through the public API (register, KYC, deposit, login, PIN)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

PASSWORD = "bench password 123"
PIN = "1357"  # also in transfers.lua
DEPOSIT = 10_000_000


@dataclass(frozen=True)
class Customer:
    user_id: str
    account_id: str
    token: str


def _ok(r: httpx.Response, *expected: int) -> httpx.Response:
    if r.status_code not in expected:
        raise RuntimeError(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:500]}")
    return r


def admin_headers(api: httpx.Client, email: str, password: str) -> dict[str, str]:
    r = _ok(api.post("/auth/login", json={"email": email, "password": password}), 200)
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def create_one(api: httpx.Client, admin: dict[str, str], label: str) -> Customer:
    email = f"bench.{label}.{uuid.uuid4().hex[:10]}@example.com"
    reg = _ok(api.post("/auth/register", json={"email": email, "password": PASSWORD, "full_name": "Bench"}), 201).json()
    user_id, account_id = reg["user"]["id"], reg["account"]["id"]
    _ok(api.post(f"/admin/users/{user_id}/kyc", json={"decision": "APPROVE"}, headers=admin), 200)
    _ok(
        api.post(
            f"/admin/accounts/{account_id}/deposits",
            json={"amount": DEPOSIT, "currency": "USD"},
            headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )
    token = _ok(api.post("/auth/login", json={"email": email, "password": PASSWORD}), 200).json()["access_token"]
    _ok(api.put("/me/pin", json={"pin": PIN}, headers={"Authorization": f"Bearer {token}"}), 204)
    return Customer(user_id, account_id, token)


def create(base_url: str, admin_email: str, admin_password: str, count: int, label: str) -> list[Customer]:
    """``count`` funded customers, registered concurrently (password hashing is deliberately slow)."""
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=60) as api:
        admin = admin_headers(api, admin_email, admin_password)
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda i: create_one(api, admin, f"{label}{i}"), range(count)))


def settle_probe(base_url: str, admin_email: str, admin_password: str, timeout: float = 120) -> float:
    """One transfer between two fresh customers, polled until final: proves a settlement worker consumes.
    Returns the seconds it took."""
    a, b = create(base_url, admin_email, admin_password, 2, "probe")
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=30) as api:
        started = time.monotonic()
        body = {"source_account_id": a.account_id, "destination_account_id": b.account_id, "amount": 1,
                "currency": "USD", "pin": PIN}  # fmt: skip
        headers = {"Authorization": f"Bearer {a.token}", "Idempotency-Key": str(uuid.uuid4())}
        transfer = _ok(api.post("/transfers", json=body, headers=headers), 202).json()
        while time.monotonic() - started < timeout:
            got = _ok(api.get(f"/transfers/{transfer['id']}", headers={"Authorization": f"Bearer {a.token}"}), 200)
            if got.json()["status"] in ("COMPLETED", "FAILED"):
                return time.monotonic() - started
            time.sleep(0.2)
    raise RuntimeError(f"probe transfer {transfer['id']} not final after {timeout:.0f} s: are the workers consuming?")
