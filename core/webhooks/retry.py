"""When to try a delivery again: a schedule of delays with jitter, the receiver's asked-for wait, and when to stop."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.webhooks.transport import Answer

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


class Verdict(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    RETRY = "RETRY"
    FAILED = "FAILED"
    GONE = "GONE"  # the receiver asks us to stop; the endpoint is disabled


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None


def decide(
    answer: Answer | None,
    *,
    attempt: int,
    schedule: tuple[float, ...],
    retry_after: timedelta | None,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What follows attempt ``attempt`` that got ``answer`` (None: no answer at all).

    ``retry_after``, the wait a refusing receiver asked for, may lengthen the scheduled delay
    (up to :data:`MAX_RETRY_AFTER`) but never shorten it."""
    if answer == Answer.ACCEPTED:
        return Decision(Verdict.SUCCEEDED)
    if answer == Answer.GONE:
        return Decision(Verdict.GONE)
    delay = backoff(schedule, attempt, rand)
    if delay is None:
        return Decision(Verdict.FAILED)
    if retry_after is not None and retry_after > timedelta(0):
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return Decision(Verdict.RETRY, now + delay)
