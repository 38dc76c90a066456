"""Integration tests share one database, each in a transaction of its own that is rolled back
at the end (SQLAlchemy ``join_transaction_mode="create_savepoint"``, as pypi/warehouse does).

A test's ``sessions``, the ``app`` (and ``client``) and every ``make_app`` app are bound to one
connection with an outer transaction begun on it; each session's ``begin``/``commit`` is a
savepoint inside it, so the code under test commits and rolls back as it would, and nothing
reaches the database. Within that one transaction ``now()`` is the same for every statement
and every audit row has the same txid.

Tests that need real commits are marked ``@pytest.mark.commits``: other threads or processes
work on the same rows (row locks, SKIP LOCKED drains, advisory locks), the worker's own engine
runs a task, the audit sealer chains committed transactions, a subprocess or another
connection must see the rows, or rows must be apart in time (accept order and statements go by
``created_at``, which is ``now()``). They get sessions and an app on their own connections, as in
production, and assert only on rows they created (never on counts over a whole table); their
rows stay (audit rows cannot be deleted), which no other test's assertion depends on.

Redis is not rolled back: rate-limit counters, locks and OTP challenges stay. Tests that
depend on them use keys of their own (a fresh prefix, user or account).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from core import after_commit
from tests import factories
from tests.conftest import close_app
from tests.integration import scratch

ROOT = Path(__file__).resolve().parents[2]

# One isolation level for the whole test transaction: a savepoint cannot change it. What
# ``snapshot()`` and the CLI checks ask for (REPEATABLE READ) is what the test transaction
# already is, and with no other writer in it, every session sees one consistent state.
TEST_ISOLATION = "REPEATABLE READ"


class _SavepointSession(Session):
    """A session joined to the test's transaction: asking for the isolation level that the
    transaction already has is a no-op (SQLAlchemy refuses to set it on a connection that has
    begun); asking for any other one still fails."""

    def connection(self, bind_arguments: Any = None, execution_options: Any = None) -> Connection:
        if execution_options and execution_options.get("isolation_level") == TEST_ISOLATION:
            execution_options = {k: v for k, v in execution_options.items() if k != "isolation_level"}
        return super().connection(bind_arguments, execution_options or None)


@pytest.fixture
def sessions(request: pytest.FixtureRequest, engine: Engine, committed_sessions) -> Iterator[sessionmaker[Session]]:  # type: ignore[no-untyped-def]
    """The test's sessions: bound to one connection whose transaction is rolled back at the end,
    or, for a test marked ``commits``, the real ones."""
    if request.node.get_closest_marker("commits"):
        yield committed_sessions
        return
    with rolled_back_sessions(engine, committed_sessions) as factory:
        yield factory


@contextmanager
def rolled_back_sessions(engine: Engine, committed: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    """Sessions like ``committed``'s, joined to one transaction that is rolled back on leaving."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level=TEST_ISOLATION)
        outer = connection.begin()
        options = {**committed.kw, "bind": connection, "join_transaction_mode": "create_savepoint"}
        factory = sessionmaker(class_=_SavepointSession, **options)  # the product's options otherwise
        after_commit.install(factory)  # publish_after_commit runs at a session's commit, as in production
        try:
            yield factory
        finally:
            outer.rollback()


def _use_sessions(app: Any, sessions: sessionmaker[Session]) -> Iterator[Any]:
    own = app.extensions["bank"]
    app.extensions["bank"] = dataclasses.replace(own, sessions=sessions)  # Resources is frozen
    try:
        yield app
    finally:
        app.extensions["bank"] = own


@pytest.fixture
def app(app, sessions, committed_sessions) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The run's app, its sessions joined to the test's transaction (unless the test commits)."""
    if sessions is committed_sessions:
        yield app
        return
    yield from _use_sessions(app, sessions)


@pytest.fixture
def make_customer(sessions, settings):  # type: ignore[no-untyped-def]
    def make(**kw):  # type: ignore[no-untyped-def]
        return factories.customer(sessions, settings, **kw)

    return make


@pytest.fixture
def make_app(sessions, committed_sessions):  # type: ignore[no-untyped-def]
    """Build an extra app with its own settings (e.g. small rate limits, a short OTP TTL); its
    sessions are the test's, like ``app``'s."""
    from core.config import Settings
    from web import create_app

    apps = []

    def make(settings=None, **overrides):  # type: ignore[no-untyped-def]
        app = create_app(settings or Settings(**overrides))
        apps.append(app)
        if sessions is not committed_sessions:
            app.extensions["bank"] = dataclasses.replace(app.extensions["bank"], sessions=sessions)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture(scope="session")
def worker_app(settings):  # type: ignore[no-untyped-def]
    """A worker app built from the settings, as ``celery -A worker`` builds one; its connections
    are closed at the end."""
    from worker.app import create_celery
    from worker.runtime import runtime

    app = create_celery(settings)
    yield app
    runtime(app).close()


@pytest.fixture
def worker_resources(worker_app):  # type: ignore[no-untyped-def]
    """The worker app's engine and Redis client; tasks this test runs in this process run in it."""
    from worker.runtime import runtime

    worker_app.set_current()
    worker_app.set_default()
    return runtime(worker_app).resources()


@dataclasses.dataclass
class Ran:
    """What a command did: ``subprocess.CompletedProcess``'s fields, from a subprocess or from Click."""

    returncode: int
    stdout: str
    stderr: str


@dataclasses.dataclass
class SmallBook:
    """A database of its own (``small_book``), migrated as ``bank_test`` and holding only the rows the
    test writes: for checks over a whole book or audit chain (the CLI's ``reconcile`` and
    ``verify-audit``), whose time would otherwise grow with everything the suite committed before."""

    url: str
    sessions: sessionmaker[Session]
    settings: Any
    admin: Any
    _app: Any = None

    def customer(self, **kw: Any) -> Any:
        return factories.customer(self.sessions, self.settings, **kw)

    def run(self, *args: str) -> Ran:
        """``flask --app web <args>`` in a subprocess, as an operator runs it, on this database (the
        suite's settings otherwise). A Python start and the app's imports cost seconds of CPU each
        time: use it where the command line itself is what is checked, ``cli`` elsewhere."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "flask"), "--app", "web", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DATABASE_URL": self.url},
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def cli(self, *args: str) -> Ran:
        """The same command in this process (Flask's CLI runner: the same Click command, its options
        parsed the same way), on an app of this database's settings."""
        if self._app is None:
            from core.config import Settings
            from web import create_app

            self._app = create_app(Settings(database_url=self.url))
        result = self._app.test_cli_runner().invoke(args=list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Ran(result.exit_code, result.stdout, result.stderr)

    def close(self) -> None:
        if self._app is not None:
            close_app(self._app)


@pytest.fixture
def small_book(stack, settings) -> Iterator[SmallBook]:  # type: ignore[no-untyped-def]
    """A fresh copy of the freshly migrated database (tests/integration/scratch.py), dropped after the test;
    its sessions commit for real (a subprocess reads what they write)."""
    from core.config import Settings
    from core.db import make_engine, make_session_factory

    name = f"small_{uuid.uuid4().hex[:12]}"
    url = scratch.clone(stack, name)
    engine = make_engine(Settings(database_url=url), pool_size=2)
    book = None
    try:
        sessions = make_session_factory(engine)
        book = SmallBook(url, sessions, settings, factories.admin(sessions))
        yield book
    finally:
        if book is not None:
            book.close()
        engine.dispose()
        scratch.drop(stack, name)
