"""A database disconnect at any point of a request is 503 SERVICE_UNAVAILABLE with Retry-After,
never a 500, and the client's retry with the same Idempotency-Key is safe; except before the
first statement of a connection's checkout, which is sent again on a new connection
(core/first_statement.py: what the pool's pre-ping did), so that request succeeds.

The disconnect is real: a SQLAlchemy event hook on the API's engine has a second connection
terminate the request's backend (``pg_terminate_backend``, waiting until it is gone) just
before the COMMIT, or just before the request's first or second statement, is sent on it; or a
pooled connection's backend is terminated while it is idle between requests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy.exc import DBAPIError

from core.models import Transfer
from tests.authflow import assert_problem, bearer, tokens
from tests.factories import PIN, fund

pytestmark = pytest.mark.commits


@contextmanager
def backend_terminated(app: Any, killer: Engine, at: str) -> Iterator[list[int]]:
    """Terminate the backend of the API connection that first reaches ``at`` ("commit": the
    request's COMMIT; "first_statement" or "second_statement": the request's first or second
    statement), once. Yields the killed pids."""
    killed: list[int] = []
    statements = {"first_statement": 1, "second_statement": 2}
    seen: list[int] = []

    def terminate(conn: Connection, *_args: Any) -> None:
        if killed:
            return
        if at in statements:
            seen.append(1)
            if len(seen) != statements[at]:
                return
        terminate_backend(killer, backend_pid(conn))
        killed.append(backend_pid(conn))

    engine = app.extensions["bank"].engine
    hook = "commit" if at == "commit" else "before_cursor_execute"
    event.listen(engine, hook, terminate)
    try:
        yield killed
    finally:
        event.remove(engine, hook, terminate)


def backend_pid(conn: Connection) -> int:
    return conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]


def terminate_backend(killer: Engine, pid: int) -> None:
    with killer.connect() as other:  # waits (up to 5 s) until the backend has exited
        assert other.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})


@contextmanager
def backends_used(app: Any) -> Iterator[list[int]]:
    """The backend pid of every statement the app's engine ran (once it has run, so a statement
    sent again on a new connection names the new one)."""
    pids: list[int] = []

    def record(conn: Connection, *_args: Any) -> None:
        pids.append(backend_pid(conn))

    engine = app.extensions["bank"].engine
    event.listen(engine, "after_cursor_execute", record)
    try:
        yield pids
    finally:
        event.remove(engine, "after_cursor_execute", record)


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


@pytest.mark.parametrize(
    ("at", "careful"),
    [("commit", False), ("commit", True), ("second_statement", True)],
    ids=["commit-one-statement", "commit-careful-path", "second-statement-careful-path"],
)
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


@pytest.mark.parametrize("at", ["commit", "second_statement"])
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


@pytest.mark.parametrize("careful", [False, True], ids=["one-statement", "careful-path"])
def test_a_backend_gone_before_the_first_statement_is_replaced_and_the_transfer_accepted_once(  # type: ignore[no-untyped-def]
    app, client, engine, sessions, make_customer, admin_user, careful: bool
) -> None:
    """The checkout's first statement failed on a dead connection and was sent again on a new one
    (nothing had run on the dead one, so nothing can have committed): 202, one transfer."""
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    headers = bearer(tokens(client, alice.email)["access_token"])
    body = {"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
            "amount": 100, "currency": "USD", "pin": PIN}  # fmt: skip
    if careful:  # one failed PIN attempt on record: the one statement declines, the careful path accepts
        wrong = client.post(
            "/api/v1/transfers", json={**body, "pin": "0000"}, headers={**headers, "Idempotency-Key": "x"}
        )
        assert_problem(wrong, 403, "INVALID_PIN")
    key = str(uuid.uuid4())
    with backend_terminated(app, engine, "first_statement") as killed, backends_used(app) as used:
        r = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert killed, "the hook never fired"
    assert r.status_code == 202, r.get_data(as_text=True)
    assert used and killed[0] not in used, "a statement ran on the dead connection"
    assert _transfers_with_key(sessions, key) == 1
    again = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
    assert again.status_code == 200 and again.json["id"] == r.json["id"]


def test_pooled_connections_killed_while_idle_do_not_fail_the_next_requests(  # type: ignore[no-untyped-def]
    app, client, engine, sessions, make_customer, admin_user
) -> None:
    """Every backend the app's pool holds is terminated between requests (as a Postgres restart
    or an idle-connection reaper would): the next requests find out on their first statement and
    succeed on new connections, without a ping before each checkout."""
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    headers = bearer(tokens(client, alice.email)["access_token"])
    body = {"source_account_id": str(alice.account.id), "destination_account_id": str(bob.account.id),
            "amount": 100, "currency": "USD", "pin": PIN}  # fmt: skip
    with backends_used(app) as before:
        for _ in range(3):
            assert client.get("/api/v1/accounts", headers=headers).status_code == 200
    for pid in set(before):
        terminate_backend(engine, pid)
    with backends_used(app) as after:
        accounts = client.get("/api/v1/accounts", headers=headers)
        r = client.post("/api/v1/transfers", json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
    assert accounts.status_code == 200, accounts.get_data(as_text=True)
    assert r.status_code == 202, r.get_data(as_text=True)
    assert after and not set(after) & set(before), "a statement ran on a terminated backend"


def test_a_statement_that_may_have_committed_is_not_sent_again(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """In autocommit the first statement may commit before its connection dies: it is not sent
    again (the connection is pinged before it instead). Nor is a later statement in a
    transaction. A sequence counts how many times each statement ran."""
    from core.db import make_engine

    own = make_engine(settings, pool_size=1)
    seq = f"test_first_statement_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SEQUENCE {seq}"))
    try:
        nextval_then_sleep = text(f"SELECT nextval('{seq}'), pg_sleep(0.5)")
        with own.connect() as warm:  # the pool holds one connection, alive
            pid = warm.scalar(text("SELECT pg_backend_pid()"))
            warm.commit()
        # Autocommit: killed while its first statement runs (nextval has happened): not sent again.
        autocommit = own.connect().execution_options(isolation_level="AUTOCOMMIT")
        with autocommit as conn, _terminated_while_running(engine, pid), pytest.raises(DBAPIError):
            conn.execute(nextval_then_sleep)
        # A transaction's second statement: not sent again either.
        with own.connect() as conn:
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
            with _terminated_while_running(engine, pid), pytest.raises(DBAPIError):
                conn.execute(nextval_then_sleep)
        with engine.connect() as conn:
            assert conn.scalar(text(f"SELECT last_value FROM {seq}")) == 2
        # Autocommit on a connection that died while idle: pinged, replaced, sent once.
        with own.connect() as conn:
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
            conn.commit()
        terminate_backend(engine, pid)
        with own.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assert conn.scalar(text(f"SELECT nextval('{seq}')")) == 3
    finally:
        own.dispose()
        with engine.begin() as conn:
            conn.execute(text(f"DROP SEQUENCE {seq}"))


@contextmanager
def _terminated_while_running(killer: Engine, pid: int) -> Iterator[None]:
    """Terminates backend ``pid`` 0.2 s from now, from another thread, while a statement runs on it."""

    def kill() -> None:
        time.sleep(0.2)
        terminate_backend(killer, pid)

    thread = threading.Thread(target=kill)
    thread.start()
    try:
        yield
    finally:
        thread.join()
