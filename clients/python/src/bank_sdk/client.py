"""The client: ``BankClient(base_url)``, then ``login``, ``transfers``, ``accounts``, ``events``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from bank_sdk import _http
from bank_sdk.errors import OtpRequired, Unauthorized
from bank_sdk.models import Account, Event, Transfer


class BankClient:
    """Talks to ``base_url`` (e.g. ``http://127.0.0.1:8000/api/v1``) over httpx."""

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None = None,
        retry: _http.RetryPolicy | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)
        self.retry = retry or _http.RetryPolicy()
        self.access_token = access_token
        self.refresh_token: str | None = None
        self.transfers = Transfers(self)
        self.accounts = Accounts(self)
        self.events = Events(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BankClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- auth ------------------------------------------------------------------------------

    def login(
        self, email: str, password: str, *, device_id: str | None = None, otp: Callable[[str], str] | None = None
    ) -> None:
        """Log in; with OTP on, ``otp(challenge_id)`` gives the code sent to the user (without it,
        OtpRequired is raised and carries ``challenge_id`` in ``problem``)."""
        body: dict[str, Any] = {"email": email, "password": password}
        if device_id is not None:
            body["device_id"] = device_id
        try:
            tokens = self._send("POST", "/auth/login", json=body, auth=False).json()
        except OtpRequired as challenge:
            if otp is None:
                raise
            challenge_id = str(challenge.problem["challenge_id"])
            verify = {"challenge_id": challenge_id, "code": otp(challenge_id)}
            tokens = self._send("POST", "/auth/otp/verify", json=verify, auth=False).json()
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token")

    def refresh(self) -> None:
        """A new access token from the refresh token (done by itself when a call meets 401)."""
        if self.refresh_token is None:
            raise Unauthorized({"code": "UNAUTHORIZED", "detail": "no refresh token: log in"}, 401)
        headers = {"Authorization": f"Bearer {self.refresh_token}"}
        answer = _http.send(self._http, "POST", "/auth/refresh", policy=self.retry, headers=headers)
        self.access_token = answer.json()["access_token"]

    # ---- one logical call ----------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        idempotency_key: str | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key  # the same on every retry of this call
        for refreshed in (False, True):
            if auth and self.access_token:
                headers["Authorization"] = f"Bearer {self.access_token}"
            try:
                return _http.send(
                    self._http, method, path, policy=self.retry, headers=headers, json=json, params=params
                )
            except Unauthorized:
                if not auth or refreshed or self.refresh_token is None:
                    raise
                self.refresh()
        raise AssertionError("unreachable")


class Transfers:
    def __init__(self, client: BankClient) -> None:
        self._client = client

    def create(
        self,
        *,
        source_account_id: str,
        destination_account_id: str,
        amount: int,
        currency: str,
        pin: str,
        reference: str | None = None,
        metadata: dict[str, str] | None = None,
        hold: bool = False,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Submit a transfer (PENDING, or its earlier result on a replay). One Idempotency-Key per
        call, reused on every retry: a retry after a dropped connection never makes a second one."""
        body: dict[str, Any] = {
            "source_account_id": source_account_id,
            "destination_account_id": destination_account_id,
            "amount": amount,
            "currency": currency,
            "pin": pin,
            "hold": hold,
        }
        if reference is not None:
            body["reference"] = reference
        if metadata:
            body["metadata"] = metadata
        key = idempotency_key or str(uuid.uuid4())
        return Transfer.from_json(self._client._send("POST", "/transfers", json=body, idempotency_key=key).json())

    def get(self, transfer_id: str) -> Transfer:
        return Transfer.from_json(self._client._send("GET", f"/transfers/{transfer_id}").json())

    def list(
        self,
        *,
        status: str | None = None,
        account_id: str | None = None,
        metadata: dict[str, str] | None = None,
        page_size: int = 100,
    ) -> Iterator[Transfer]:
        """Every matching transfer, newest first, page after page (cursor followed)."""
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status
        if account_id:
            params["account_id"] = account_id
        for key, value in (metadata or {}).items():
            params[f"metadata[{key}]"] = value
        while True:
            page = self._client._send("GET", "/transfers", params=params).json()
            for item in page["items"]:
                yield Transfer.from_json(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def wait(self, transfer_id: str, timeout: float = 30.0, interval: float = 0.25) -> Transfer:
        """Poll until the transfer is final (COMPLETED, FAILED, VOIDED, EXPIRED); TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            transfer = self.get(transfer_id)
            if transfer.final:
                return transfer
            if time.monotonic() >= deadline:
                raise TimeoutError(f"transfer {transfer_id} still {transfer.status} after {timeout} s")
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, 2.0)


class Accounts:
    def __init__(self, client: BankClient) -> None:
        self._client = client

    def list(self) -> list[Account]:
        return [Account.from_json(a) for a in self._client._send("GET", "/accounts").json()["items"]]

    def get(self, account_id: str) -> Account:
        return Account.from_json(self._client._send("GET", f"/accounts/{account_id}").json())

    def set_metadata(self, account_id: str, metadata: dict[str, str]) -> Account:
        answer = self._client._send("PATCH", f"/accounts/{account_id}", json={"metadata": metadata})
        return Account.from_json(answer.json())


class Events:
    def __init__(self, client: BankClient) -> None:
        self._client = client
        self.cursor: str | None = None  # where follow() has read to: keep it to resume later

    def page(self, *, after: str | None = None, types: list[str] | None = None, limit: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        if types:
            params["types"] = ",".join(types)
        result: dict[str, Any] = self._client._send("GET", "/events", params=params).json()
        return result

    def follow(
        self,
        *,
        types: list[str] | None = None,
        after: str | None = None,
        poll_interval: float = 1.0,
        idle_timeout: float | None = None,
    ) -> Iterator[Event]:
        """Every event from ``after`` (default: the oldest kept), in feed order, then new ones as
        they commit; never skips, never repeats. Runs until ``idle_timeout`` seconds pass with
        nothing new (None: forever). ``self.cursor`` says where it stopped."""
        self.cursor = after
        idle_since = time.monotonic()
        while True:
            page = self.page(after=self.cursor, types=types)
            for item in page["items"]:
                yield Event.from_json(item)
            moved = page["next_cursor"] != self.cursor
            self.cursor = page["next_cursor"]
            if page["items"]:
                idle_since = time.monotonic()
                continue
            if moved:
                continue  # read past others' events: keep reading
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            time.sleep(poll_interval)
