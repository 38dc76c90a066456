"""Recurrence rules: the search for a first occurrence is bounded (core.schedules.rules)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import ScheduleInvalid
from core.schedules import rules


def test_a_first_occurrence_beyond_the_horizon_counts_as_never() -> None:
    # Feb 29 on a Monday: 2044, then 2072, more than 20 years after a 2045 start.
    start = datetime(2045, 1, 1, 9, tzinfo=UTC)
    rule = rules.build(start, "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", until=None, count=None)
    assert rule.after(start) == datetime(2072, 2, 29, 9, tzinfo=UTC)  # dateutil alone finds it
    with pytest.raises(ScheduleInvalid):
        rules.validate(rule, start, None, now=start)


def test_a_first_occurrence_within_the_horizon_is_found() -> None:
    start = datetime(2026, 12, 3, 9, tzinfo=UTC)
    rule = rules.build(start, "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;COUNT=2", until=None, count=None)
    assert rules.validate(rule, start, None, now=start) == datetime(2044, 2, 29, 9, tzinfo=UTC)


def test_a_daily_rule_that_never_matches_is_refused() -> None:
    start = datetime(2026, 12, 3, 9, tzinfo=UTC)
    rule = rules.build(start, "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", until=None, count=None)
    with pytest.raises(ScheduleInvalid):
        rules.validate(rule, start, None, now=start)
