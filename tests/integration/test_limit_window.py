"""The rate limit's moving window in one Redis round trip (web/limit_window.py): the headers count
down, a breach is a 429 with Retry-After, the window is the library's (same list, same rule), and
each limited request sends Redis exactly one command for its limit."""

from __future__ import annotations

import time
import uuid

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from tests.authflow import assert_problem, login
from tests.redis_monitor import Monitor


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_headers_count_down_and_a_breach_is_429(make_app, make_customer, prefix: str) -> None:  # type: ignore[no-untyped-def]
    client = make_app(rate_limit_key_prefix=prefix, rate_limit_login_ip="3 per minute").test_client()
    people = [make_customer() for _ in range(4)]
    seen = []
    for p in people[:3]:
        r = login(client, p.email)
        assert r.status_code == 200
        seen.append((r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]))
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]
    r = login(client, people[3].email)
    assert_problem(r, 429, "RATE_LIMITED")
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(r.headers["Retry-After"]) <= 60


def test_the_window_is_the_librarys_moving_window(make_app, make_customer, settings, prefix: str) -> None:  # type: ignore[no-untyped-def]
    """Entries taken here are read back by flask-limiter's own moving window (the same list), so a
    switch between the strategies keeps every budget already spent."""
    client = make_app(rate_limit_key_prefix=prefix, rate_limit_login_ip="5 per minute").test_client()
    for _ in range(2):
        assert login(client, make_customer().email).status_code == 200
    library = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))
    reset, remaining = library.get_window_stats(parse("5 per minute"), prefix, "ip:127.0.0.1", "auth.login")
    assert remaining == 3
    assert time.time() < reset <= time.time() + 60


def test_one_redis_command_per_limit(make_app, make_customer, redis_client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    """A login is counted by two limits (its address and its account): two commands, where the
    library's moving window sent three (two takes, one read for the headers)."""
    client = make_app(rate_limit_key_prefix=prefix, rate_limit_login_ip="50 per minute").test_client()
    people = [make_customer() for _ in range(3)]
    login(client, make_customer().email)  # the script is loaded (SCRIPT LOAD) by the first request
    with Monitor(redis_client, prefix) as seen:
        for p in people:
            r = login(client, p.email)
            assert r.status_code == 200 and "X-RateLimit-Remaining" in r.headers
    assert seen.commands == ["EVALSHA"] * 6, seen.commands
