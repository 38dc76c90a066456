"""The outbox's time partitions: ``webhook_events`` by UTC day of ``occurred_at`` (migration 0028).

Retention then costs the same whatever the volume: a day past the retention (core/events_feed.py
RETENTION, the feed's promise) is dropped whole, not deleted row by row, and the days ahead are
created before they are needed. Partitions:

- ``webhook_events_pYYYYMMDD``: one UTC day, [day, day + 1);
- ``webhook_events_legacy``: the table as it was before the migration, everything before the
  migration's next day, dropped like a day once that is past the retention;
- ``webhook_events_default``: a safety net, so an insert (in the transaction of a money
  movement) never fails for want of a partition; the batched prune clears what lands there.

A day is dropped only when none of its events is waiting for the relay (nothing accepted is
lost), after its deliveries are deleted (their event_id has no foreign key on a partitioned table).
Creating and dropping take short locks on the parent, under a lock timeout: a busy moment makes
the task try again at its next run rather than stall the writers queued behind it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.events_feed import RETENTION

PARENT = "webhook_events"
AHEAD_DAYS = 7  # days kept ready after today (migration 0028 creates as many)
LOCK_TIMEOUT_MS = 1000
_DAY = re.compile(r"^webhook_events_p(\d{8})$")
_OTHERS = frozenset({"webhook_events_legacy", "webhook_events_default"})

# Each partition of the parent and its upper bound (NULL: the default partition), read from the
# catalogue; the bound's text is cast back in the same session, so its time zone is consistent.
_PARTITIONS = """
SELECT c.relname AS name,
       CAST((regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1] AS timestamptz) AS upper
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = CAST(:parent AS regclass)
 ORDER BY upper NULLS LAST
"""


def is_partition(name: str) -> bool:
    """A partition of the outbox (not in the models' metadata: Alembic leaves it alone)."""
    return bool(_DAY.match(name)) or name in _OTHERS


@dataclass(frozen=True)
class Partition:
    name: str
    upper: datetime | None  # exclusive; None: the default partition


@dataclass(frozen=True)
class Ensured:
    created: list[str]
    skipped: list[str]  # rows of the day already in the default partition, or the lock not granted


@dataclass(frozen=True)
class Dropped:
    dropped: list[str]
    kept_unrelayed: list[str]  # past the retention, but holding events the relay has not fanned out
    busy: list[str]  # the lock was not granted in time: next run


def partitions(session: Session) -> list[Partition]:
    return [Partition(row.name, row.upper) for row in session.execute(text(_PARTITIONS), {"parent": PARENT})]


def _day_name(day: datetime) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _quoted(name: str) -> str:
    # Only names this module makes or the migration made: never a value from outside.
    if not is_partition(name):
        raise ValueError(f"not an outbox partition: {name!r}")
    return f'"{name}"'


def _lock_timeout(session: Session) -> None:
    session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": str(LOCK_TIMEOUT_MS)})


def ensure_partitions(session: Session, *, now: datetime, ahead_days: int = AHEAD_DAYS) -> Ensured:
    """Create the day partitions from the end of the last one through ``ahead_days`` after
    today. Each is made as a plain table and attached (a lock that lets inserts go on); a day
    whose rows already sit in the default partition, or whose lock is not granted in time, is
    skipped: the default partition keeps taking its events, the next run tries again."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    bounded = [p.upper.astimezone(UTC) for p in partitions(session) if p.upper is not None]
    day = max([today, *bounded])
    created: list[str] = []
    skipped: list[str] = []
    while day <= today + timedelta(days=ahead_days):
        name = _day_name(day)
        # Partition bounds are not bind parameters in DDL: the literals are this function's own datetimes.
        lo, hi = day.isoformat(), (day + timedelta(days=1)).isoformat()
        try:
            with session.begin_nested():
                _lock_timeout(session)
                session.execute(
                    text(f"CREATE TABLE {_quoted(name)} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                )
                session.execute(
                    text(f"ALTER TABLE {PARENT} ATTACH PARTITION {_quoted(name)} FOR VALUES FROM ('{lo}') TO ('{hi}')")
                )
            created.append(name)
        except DBAPIError:
            skipped.append(name)
        day += timedelta(days=1)
    return Ensured(created, skipped)


def expired(session: Session, *, now: datetime) -> list[Partition]:
    """The partitions whose every event is older than the retention (the default never is)."""
    cutoff = now - RETENTION
    return [p for p in partitions(session) if p.upper is not None and p.upper <= cutoff]


def drop_partition(session: Session, name: str) -> bool | None:
    """Delete the partition's deliveries and drop it: True; False if it still holds events the
    relay has not fanned out (kept); None if its lock was not granted in time (next run)."""
    table = _quoted(name)
    if session.execute(text(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE relayed_at IS NULL)")).scalar_one():  # noqa: S608 -- a checked partition name
        return False
    try:
        with session.begin_nested():
            session.execute(text(f"DELETE FROM webhook_deliveries d USING {table} e WHERE d.event_id = e.id"))  # noqa: S608 -- a checked partition name
            _lock_timeout(session)
            session.execute(text(f"DROP TABLE {table}"))
    except DBAPIError:
        return None
    return True


def drop_expired(session: Session, *, now: datetime) -> Dropped:
    """Drop every partition past the retention (see ``drop_partition``), in this transaction."""
    dropped: list[str] = []
    kept: list[str] = []
    busy: list[str] = []
    for partition in expired(session, now=now):
        outcome = drop_partition(session, partition.name)
        {True: dropped, False: kept, None: busy}[outcome].append(partition.name)
    return Dropped(dropped, kept, busy)
