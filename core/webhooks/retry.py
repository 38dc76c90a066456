"""When to try a delivery again: a schedule of delays with jitter, Retry-After, and when to stop."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

# Production default, as Standard Webhooks senders do: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
# after the first attempt, i.e. 8 attempts over about 27.6 hours.
DEFAULT_SCHEDULE = "5,300,1800,7200,18000,36000,36000"
JITTER = 0.2  # each delay is stretched by up to 20%: never earlier than the schedule
MAX_RETRY_AFTER = timedelta(days=1)  # a receiver cannot park a delivery for longer


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` -> ``(5.0, 300.0, 1800.0)``: the delays before the 2nd, 3rd, … attempt."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"retry schedule must be comma-separated seconds, got {text!r}") from exc
    if any(d <= 0 or d != d for d in delays):  # d != d: NaN
        raise ValueError("retry schedule delays must be positive numbers of seconds")
    return delays


def max_attempts(schedule: tuple[float, ...]) -> int:
    return 1 + len(schedule)


def backoff(schedule: tuple[float, ...], attempt: int, rand: Callable[[], float] = random.random) -> timedelta | None:
    """The delay after attempt number ``attempt`` (1-based) failed, or None when none is left."""
    if attempt < 1 or attempt > len(schedule):
        return None
    return timedelta(seconds=schedule[attempt - 1] * (1 + JITTER * rand()))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP date. Garbage or the past is ignored."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            delay = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    if delay <= timedelta(0):
        return None
    return min(delay, MAX_RETRY_AFTER)


class Verdict(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    RETRY = "RETRY"
    FAILED = "FAILED"
    GONE = "GONE"  # 410: the receiver asks us to stop; the endpoint is disabled


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None


def decide(
    status_code: int | None,
    *,
    attempt: int,
    schedule: tuple[float, ...],
    retry_after: str | None,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What follows attempt ``attempt`` that got ``status_code`` (None: no HTTP answer at all)."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Verdict.SUCCEEDED)
    if status_code == 410:
        return Decision(Verdict.GONE)
    delay = backoff(schedule, attempt, rand)
    if delay is None:
        return Decision(Verdict.FAILED)
    if status_code in (429, 503):
        asked = parse_retry_after(retry_after, now)
        if asked is not None:
            delay = max(delay, asked)
    return Decision(Verdict.RETRY, now + delay)
