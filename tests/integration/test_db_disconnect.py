"""A database disconnect at any point of a request is 503 SERVICE_UNAVAILABLE with Retry-After,
never a 500, and the client's retry with the same Idempotency-Key is safe.

The disconnect is real: a SQLAlchemy event hook on the API's engine has a second connection
terminate the request's backend (``pg_terminate_backend``, waiting until it is gone) just
before the COMMIT, or just before the request's first statement, is sent on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text

from core.models import Transfer
from tests.authflow import assert_problem, bearer, tokens
from tests.factories import PIN, fund

pytestmark = pytest.mark.commits


@contextmanager
def backend_terminated(app: Any, killer: Engine, at: str) -> Iterator[list[int]]:
    """Terminate the backend of the API connection that first reaches ``at`` ("commit": the
    request's COMMIT; "before_cursor_execute": its first statement), once. Yields the killed pids."""
    killed: list[int] = []

    def terminate(conn: Connection, *_args: Any) -> None:
        if killed:
            return
        pid = conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        with killer.connect() as other:  # waits (up to 5 s) until the backend has exited
            assert other.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        killed.append(pid)

    engine = app.extensions["bank"].engine
    event.listen(engine, at, terminate)
    try:
        yield killed
    finally:
        event.remove(engine, at, terminate)


@contextmanager
def idle_timeout_at_commit(app: Any) -> Iterator[list[int]]:
    """Postgres itself ends the request's session (idle_in_transaction_session_timeout, SQLSTATE
    25P03, which psycopg raises as an InternalError, not an OperationalError) just before its
    COMMIT, once."""
    ended: list[int] = []

    def idle(conn: Connection) -> None:
        if ended:
            return
        conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 50")
        time.sleep(0.5)
        ended.append(1)

    engine = app.extensions["bank"].engine
    event.listen(engine, "commit", idle)
    try:
        yield ended
    finally:
        event.remove(engine, "commit", idle)


def test_a_session_postgres_ends_at_commit_answers_503(app, client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    headers = bearer(tokens(client, alice.email)["access_token"])
    body = {"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
            "amount": 100, "currency": "USD", "pin": PIN}  # fmt: skip
    key = str(uuid.uuid4())
    with idle_timeout_at_commit(app) as ended:
        r = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert ended
    assert_problem(r, 503, "SERVICE_UNAVAILABLE")
    assert r.headers["Retry-After"]
    assert _transfers_with_key(sessions, key) == 0
    retry = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert retry.status_code == 202, retry.get_data(as_text=True)


def _transfers_with_key(sessions: Any, key: str) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Transfer).where(Transfer.idempotency_key == key)) or 0


@pytest.mark.parametrize("at", ["commit", "before_cursor_execute"])
@pytest.mark.parametrize("careful", [False, True], ids=["one-statement", "careful-path"])
def test_post_transfers_answers_503_and_the_same_key_retries_safely(  # type: ignore[no-untyped-def]
    app, client, engine, sessions, make_customer, admin_user, at: str, careful: bool
) -> None:
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    headers = bearer(tokens(client, alice.email)["access_token"])
    body = {
        "source_account_id": str(alice.account.id),
        "destination_account_id": str(bob.account.id),
        "amount": 100,
        "currency": "USD",
        "pin": PIN,
    }
    if careful:  # one failed PIN attempt on record: the one statement declines, the careful path accepts
        wrong = client.post(
            "/api/v1/transfers", json={**body, "pin": "0000"}, headers={**headers, "Idempotency-Key": "x"}
        )
        assert_problem(wrong, 403, "INVALID_PIN")
    key = str(uuid.uuid4())
    with backend_terminated(app, engine, at) as killed:
        r = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert killed, "the hook never fired"
    assert_problem(r, 503, "SERVICE_UNAVAILABLE")
    assert r.headers["Retry-After"]
    assert _transfers_with_key(sessions, key) == 0  # killed before its COMMIT reached Postgres

    retry = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert retry.status_code == 202, retry.get_data(as_text=True)
    again = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert again.status_code == 200 and again.json["id"] == retry.json["id"]
    assert _transfers_with_key(sessions, key) == 1


@pytest.mark.parametrize("at", ["commit", "before_cursor_execute"])
def test_a_read_answers_503(app, client, engine, make_customer, at: str) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    headers = bearer(tokens(client, alice.email)["access_token"])
    with backend_terminated(app, engine, at) as killed:
        r = client.get("/api/v1/accounts", headers=headers)
    if killed:  # a read that commits nothing has no COMMIT to break
        assert_problem(r, 503, "SERVICE_UNAVAILABLE")
        assert r.headers["Retry-After"]
    else:
        assert at == "commit" and r.status_code == 200
    assert client.get("/api/v1/accounts", headers=headers).status_code == 200
