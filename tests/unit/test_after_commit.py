"""publish_after_commit: run after the commit, once; never after a rollback. No server needed:
a session that never touches a database still commits and rolls back its transactions."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core import after_commit
from core.after_commit import publish_after_commit


@pytest.fixture
def sessions() -> sessionmaker[Session]:
    factory = sessionmaker()
    after_commit.install(factory)
    return factory


def test_runs_once_after_the_commit_in_order(sessions: sessionmaker[Session]) -> None:
    calls: list[str] = []
    with sessions() as session:
        session.begin()
        publish_after_commit(session, calls.append, "first")
        publish_after_commit(session, calls.append, "second")
        assert calls == []  # not while the transaction is open
        session.commit()
        assert calls == ["first", "second"]
        session.begin()
        session.commit()  # the next transaction of the same session does not run them again
    assert calls == ["first", "second"]


def test_a_rollback_runs_nothing_now_or_at_the_next_commit(sessions: sessionmaker[Session]) -> None:
    calls: list[str] = []
    with pytest.raises(KeyError), sessions.begin() as session:
        publish_after_commit(session, calls.append, "rolled back")
        raise KeyError("the view failed")
    with sessions() as session:
        session.begin()
        publish_after_commit(session, calls.append, "closed while open")
        session.close()  # a request's teardown closes a session it left open
        session.begin()
        publish_after_commit(session, calls.append, "committed")
        session.commit()
    assert calls == ["committed"]


def test_a_callable_that_raises_does_not_fail_the_commit_or_the_others(sessions: sessionmaker[Session]) -> None:
    calls: list[str] = []

    def broker_down() -> None:
        raise ConnectionError("broker unreachable")

    with sessions.begin() as session:
        publish_after_commit(session, broker_down)
        publish_after_commit(session, calls.append, "after it")
    assert calls == ["after it"]


def test_outside_a_transaction_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(RuntimeError):
        publish_after_commit(session, print, "never")
