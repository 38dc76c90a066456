"""The test transaction itself: the test and the app under test share it, and nothing in it
reaches the database; a test marked ``commits`` writes for real."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from core.models import User
from tests import factories
from tests.integration.conftest import rolled_back_sessions
from tests.integration.test_api import login


def _seen_elsewhere(engine: Engine, user_id: object) -> int:
    with engine.connect() as other:  # a connection of its own, outside the test's transaction
        return other.scalar(select(func.count()).select_from(User).where(User.id == user_id)) or 0


def test_the_app_and_the_test_share_a_transaction_nothing_else_sees(client, sessions, engine, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    h = login(client, c.email)  # the app reads the customer the test made
    r = client.put("/api/v1/me/pin", json={"pin": "9876", "current_pin": "1234"}, headers=h)
    assert r.status_code == 204, r.json
    with sessions() as s:  # and the test sees what the app committed
        assert s.get_one(User, c.user.id).pin_hash != c.user.pin_hash
    assert _seen_elsewhere(engine, c.user.id) == 0


def test_a_session_that_rolls_back_undoes_only_its_own_work(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    with pytest.raises(RuntimeError), sessions.begin() as s:
        s.get_one(User, c.user.id).full_name = "changed"
        s.flush()
        raise RuntimeError("rolled back")
    with sessions() as s:  # back to its savepoint: the customer the test made is still there
        assert s.get_one(User, c.user.id).full_name == "Test"


def test_nothing_of_the_test_transaction_is_left_after_it(engine, committed_sessions, settings) -> None:  # type: ignore[no-untyped-def]
    with rolled_back_sessions(engine, committed_sessions) as sessions:
        c = factories.customer(sessions, settings)  # commits (a savepoint)
        with sessions() as s:
            assert s.get(User, c.user.id) is not None
    assert _seen_elsewhere(engine, c.user.id) == 0


@pytest.mark.commits
def test_a_test_marked_commits_writes_for_real(engine, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    assert _seen_elsewhere(engine, c.user.id) == 1
