"""Recurrence rules (RFC 5545) evaluated by python-dateutil's rrule, in UTC.

Occurrences fall at ``start_at``'s time of day to the second (rrule drops the fraction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice

from dateutil.rrule import DAILY, rrule, rrulestr

from core.errors import ScheduleInvalid

MAX_PER_YEAR = 1_000
MAX_START_AHEAD = timedelta(days=3653)  # ten years
# How far the first occurrence is looked for. dateutil walks a rule whose filters never match
# (FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30) to the year 9999, seconds of CPU per request; bounded
# here, a rule with no occurrence in 20 years of its start counts as never occurring.
FIRST_OCCURRENCE_HORIZON = timedelta(days=7305)


def build(start_at: datetime, rule: str | None, *, until: datetime | None, count: int | None) -> rrule:
    """The schedule's occurrences; ``SCHEDULE_INVALID`` for a rule dateutil cannot read."""
    start = start_at.astimezone(UTC)
    if rule is None:
        rule = "FREQ=DAILY;COUNT=1"  # once, at start_at
        if until is not None or count is not None:
            raise ScheduleInvalid("until and count need an rrule", errors={"rrule": ["Required with until or count."]})
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :]
    if any(part.split("=", 1)[0].strip().upper() == "DTSTART" for part in text.split(";")) or "\n" in text:
        raise ScheduleInvalid("the rule is one RRULE; start_at gives its start", errors={"rrule": ["Not one RRULE."]})
    try:
        parsed = rrulestr(text, dtstart=start)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise ScheduleInvalid(f"not an RFC 5545 recurrence rule: {error}", errors={"rrule": [str(error)]}) from error
    if not isinstance(parsed, rrule):
        raise ScheduleInvalid("the rule is one RRULE", errors={"rrule": ["Not one RRULE."]})
    if parsed._freq > DAILY and any(  # dateutil keeps them private
        part.split("=", 1)[0].strip().upper().startswith("BY") for part in text.split(";")
    ):
        # dateutil walks every step of the frequency through the BY… filters and stops only at the
        # year 9999: an hourly (or finer) rule whose filters never match would hold a request for
        # minutes. Such rules are refused; daily and coarser ones stay cheap enough to search.
        raise ScheduleInvalid(
            "an hourly, minutely or secondly rule takes no BY… parts", errors={"rrule": ["No BY… parts below DAILY."]}
        )
    if until is not None or count is not None:
        if parsed._count is not None or parsed._until is not None:  # dateutil keeps them private
            raise ScheduleInvalid("UNTIL or COUNT given twice", errors={"rrule": ["UNTIL/COUNT also in the fields."]})
        if until is not None and count is not None:
            raise ScheduleInvalid("until and count exclude each other", errors={"count": ["Not with until."]})
        try:
            parsed = parsed.replace(until=until.astimezone(UTC) if until else None, count=count)
        except ValueError as error:
            raise ScheduleInvalid(str(error), errors={"rrule": [str(error)]}) from error
    return parsed


def validate(rule: rrule, start_at: datetime, until: datetime | None, now: datetime) -> datetime:
    """The first occurrence, once the schedule passes the contract's checks (SCHEDULE_INVALID)."""
    if start_at < now:
        raise ScheduleInvalid("start_at is in the past", errors={"start_at": ["Must not be in the past."]})
    if start_at > now + MAX_START_AHEAD:
        raise ScheduleInvalid("start_at is more than 10 years out", errors={"start_at": ["At most 10 years ahead."]})
    if until is not None and until < start_at:
        raise ScheduleInvalid("until is before start_at", errors={"until": ["Must not be before start_at."]})
    start = start_at.replace(microsecond=0)
    horizon = start + FIRST_OCCURRENCE_HORIZON
    if rule._until is not None:  # dateutil keeps it private
        horizon = min(horizon, rule._until)
    first = rule.replace(count=None, until=horizon).after(start, inc=True)
    if first is None:
        raise ScheduleInvalid("the rule never occurs", errors={"rrule": ["Never occurs."]})
    # Counting stops at the first occurrence past the cap: FREQ=SECONDLY costs 1,001 steps.
    year_end = first + timedelta(days=365)
    within_year = sum(1 for o in islice(rule.xafter(first, inc=True), MAX_PER_YEAR + 1) if o < year_end)
    if within_year > MAX_PER_YEAR:
        raise ScheduleInvalid(
            f"the rule occurs more than {MAX_PER_YEAR} times a year", errors={"rrule": ["Too frequent."]}
        )
    return first


def next_after(rule: rrule, occurrence: datetime) -> datetime | None:
    """The occurrence that follows ``occurrence``; None when none is left."""
    return rule.after(occurrence, inc=False)


def next_from(rule: rrule, now: datetime) -> datetime | None:
    """The first occurrence at or after ``now`` (a resumed schedule's next run)."""
    return rule.after(now, inc=True)
