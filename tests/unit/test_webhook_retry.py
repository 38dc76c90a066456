"""The retry schedule: backoff with jitter, the receiver's asked-for wait, when a delivery stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.config import Settings
from core.webhooks.retry import (
    DEFAULT_SCHEDULE,
    JITTER,
    Verdict,
    backoff,
    decide,
    max_attempts,
    parse_schedule,
)
from core.webhooks.transport import Answer

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FAST = (1.0, 1.0, 1.0)


def test_production_default_is_at_least_8_attempts_over_at_least_24_hours() -> None:
    assert Settings.model_fields["webhook_retry_schedule"].default == parse_schedule(DEFAULT_SCHEDULE)  # tests: faster
    schedule = parse_schedule(DEFAULT_SCHEDULE)
    assert max_attempts(schedule) >= 8
    assert sum(schedule) >= 24 * 3600
    # Roughly exponential: each wait at least as long as the one before.
    assert list(schedule) == sorted(schedule)


def test_parse_schedule() -> None:
    assert parse_schedule("1, 1,1") == FAST
    assert parse_schedule("0.5,30") == (0.5, 30.0)
    assert parse_schedule("") == ()  # one attempt, no retry
    for bad in ("1,x", "1,-2", "0", "nan"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_settings_refuse_a_bad_schedule() -> None:
    with pytest.raises(ValueError, match="retry schedule"):
        Settings(webhook_retry_schedule="5,soon")


def test_backoff_follows_the_schedule_with_bounded_jitter() -> None:
    schedule = (5.0, 300.0)
    assert backoff(schedule, 1, rand=lambda: 0.0) == timedelta(seconds=5)
    assert backoff(schedule, 1, rand=lambda: 1.0) == timedelta(seconds=5 * (1 + JITTER))
    assert backoff(schedule, 2, rand=lambda: 0.5) == timedelta(seconds=300 * (1 + JITTER / 2))
    assert backoff(schedule, 3) is None  # no retry left after the 3rd attempt
    delays = {backoff(schedule, 2) for _ in range(50)}
    assert len(delays) > 1  # jitter spreads the retries of many deliveries
    assert all(d is not None and timedelta(seconds=300) <= d <= timedelta(seconds=360) for d in delays)


def test_an_accepted_message_succeeds() -> None:
    assert decide(Answer.ACCEPTED, attempt=1, schedule=FAST, retry_after=None, now=NOW).verdict == Verdict.SUCCEEDED


@pytest.mark.parametrize("answer", [None, Answer.REFUSED])
def test_other_answers_retry_until_the_schedule_is_used_up(answer: Answer | None) -> None:
    for attempt in (1, 2, 3):
        d = decide(answer, attempt=attempt, schedule=FAST, retry_after=None, now=NOW, rand=lambda: 0.0)
        assert d.verdict == Verdict.RETRY and d.next_attempt_at == NOW + timedelta(seconds=1)
    assert decide(answer, attempt=4, schedule=FAST, retry_after=None, now=NOW).verdict == Verdict.FAILED
    assert max_attempts(FAST) == 4


def test_gone_stops_at_once() -> None:
    assert decide(Answer.GONE, attempt=1, schedule=FAST, retry_after=None, now=NOW).verdict == Verdict.GONE


def test_an_asked_for_wait_lengthens_the_backoff() -> None:
    d = decide(Answer.REFUSED, attempt=1, schedule=FAST, retry_after=timedelta(seconds=120), now=NOW, rand=lambda: 0.0)
    assert d.next_attempt_at == NOW + timedelta(seconds=120)


def test_an_asked_for_wait_never_shortens_the_backoff_nor_parks_forever() -> None:
    d = decide(
        Answer.REFUSED, attempt=1, schedule=(600.0,), retry_after=timedelta(seconds=1), now=NOW, rand=lambda: 0.0
    )
    assert d.next_attempt_at == NOW + timedelta(seconds=600)
    d = decide(Answer.REFUSED, attempt=1, schedule=FAST, retry_after=timedelta(days=10), now=NOW, rand=lambda: 0.0)
    assert d.next_attempt_at == NOW + timedelta(days=1)
    assert decide(Answer.REFUSED, attempt=1, schedule=FAST, retry_after=timedelta(days=10), now=NOW).verdict == (
        Verdict.RETRY
    )
