"""The worker's HTTP transport: what a receiver's status and Retry-After mean for a delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from core.webhooks.transport import Answer
from worker.http_transport import parse_retry_after, reply

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_is_accepted(status: int) -> None:
    assert reply(status, "", None, now=NOW).answer == Answer.ACCEPTED


def test_410_is_gone() -> None:
    assert reply(410, "", "60", now=NOW).answer == Answer.GONE


@pytest.mark.parametrize("status", [199, 301, 400, 404, 429, 500, 503])
def test_other_statuses_are_refused_and_kept_as_data(status: int) -> None:
    r = reply(status, "no", None, now=NOW)
    assert (r.answer, r.status_code, r.body, r.retry_after) == (Answer.REFUSED, status, "no", None)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_read_for_429_and_503(status: int) -> None:
    assert reply(status, "", "120", now=NOW).retry_after == timedelta(seconds=120)
    date = format_datetime(NOW + timedelta(minutes=10), usegmt=True)
    assert reply(status, "", date, now=NOW).retry_after == timedelta(minutes=10)


def test_retry_after_of_other_statuses_is_ignored() -> None:
    assert reply(500, "", "120", now=NOW).retry_after is None


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "0", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_unusable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None
