"""events partitions: webhook_events partitioned by day of occurred_at, old days dropped whole

The outbox was pruned with DELETE, a cost that grows with the volume (dead rows, WAL, vacuum).
Now it is partitioned by range of ``occurred_at``: one partition per UTC day, created ahead by
the retention task (core/events_partitions.py) and dropped whole once the day is past the
retention, with a DEFAULT partition so an insert never fails for want of a partition.

The existing table is not copied: it becomes the first partition (``webhook_events_legacy``,
every time before tomorrow), attached without a scan (its bound is a validated CHECK first), and
is dropped like a day once tomorrow is past the retention. A partitioned table's unique
constraints include its partition key, hence:

- the primary key is (id, occurred_at); ids stay random UUIDs;
- ``sequence`` keeps its identity on the parent (continuing after the largest one) but no longer
  its own unique constraint (the identity alone draws it, ALWAYS);
- the feed's unique index is (feed_position, occurred_at) where positioned (positions are drawn
  under the relay's lock, core/webhooks/relay.py);
- webhook_deliveries.event_id loses its foreign key (a key on id alone cannot reference the
  partitioned table): the relay and the replay insert deliveries only for events they read, and
  the retention task deletes a day's deliveries before it drops the day.

Cost: the old table's primary key and the feed index are rebuilt (under its lock: event inserts,
and so accepts and settlements, wait meanwhile). With the batched prune in place it holds about 30
days of events; on a large outbox run it in a quiet window (migrations/env.py's 60 s statement
timeout stops it, rolled back, rather than let it stall the writers longer).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AHEAD_DAYS = 7  # core/events_partitions.py AHEAD_DAYS: the task keeps this many days ready

_UPGRADE = """
ALTER TABLE webhook_deliveries DROP CONSTRAINT fk_webhook_deliveries_event_id_webhook_events;

ALTER TABLE webhook_events RENAME TO webhook_events_legacy;
ALTER TABLE webhook_events_legacy RENAME CONSTRAINT pk_webhook_events TO pk_webhook_events_legacy;
ALTER INDEX ix_webhook_events_unrelayed RENAME TO ix_webhook_events_legacy_unrelayed;
DROP INDEX ix_webhook_events_feed_position;

-- The parent: the same columns, defaults, CHECKs and a new identity for sequence.
CREATE TABLE webhook_events (
    LIKE webhook_events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING STORAGE,
    CONSTRAINT pk_webhook_events PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
SELECT setval(pg_get_serial_sequence('webhook_events', 'sequence'),
              (SELECT coalesce(max(sequence), 0) + 1 FROM webhook_events_legacy), false);
CREATE INDEX ix_webhook_events_unrelayed ON webhook_events (sequence) WHERE relayed_at IS NULL;
CREATE UNIQUE INDEX ix_webhook_events_feed_position ON webhook_events (feed_position, occurred_at)
    WHERE feed_position IS NOT NULL;

-- The old table, as the partition of everything before tomorrow (UTC).
ALTER TABLE webhook_events_legacy ALTER COLUMN sequence DROP IDENTITY;
ALTER TABLE webhook_events_legacy DROP CONSTRAINT uq_webhook_events_sequence;
ALTER TABLE webhook_events_legacy DROP CONSTRAINT pk_webhook_events_legacy;
ALTER TABLE webhook_events_legacy ADD CONSTRAINT pk_webhook_events_legacy PRIMARY KEY (id, occurred_at);
DO $$
DECLARE
    tomorrow timestamptz := (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC';
    day timestamptz;
BEGIN
    EXECUTE format('ALTER TABLE webhook_events_legacy ADD CONSTRAINT legacy_bound CHECK (occurred_at < %L) NOT VALID',
                   tomorrow);
    ALTER TABLE webhook_events_legacy VALIDATE CONSTRAINT legacy_bound;
    EXECUTE format('ALTER TABLE webhook_events ATTACH PARTITION webhook_events_legacy'
                   ' FOR VALUES FROM (MINVALUE) TO (%L)', tomorrow);
    ALTER TABLE webhook_events_legacy DROP CONSTRAINT legacy_bound;
    FOR n IN 0..%(ahead)s LOOP
        day := tomorrow + n * interval '1 day';
        EXECUTE format('CREATE TABLE %I PARTITION OF webhook_events FOR VALUES FROM (%L) TO (%L)',
                       'webhook_events_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'), day, day + interval '1 day');
    END LOOP;
END $$;
CREATE TABLE webhook_events_default PARTITION OF webhook_events DEFAULT;
"""

_DOWNGRADE = """
CREATE TABLE webhook_events_plain (LIKE webhook_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE);
ALTER TABLE webhook_events_plain ALTER COLUMN sequence DROP DEFAULT;
INSERT INTO webhook_events_plain SELECT * FROM webhook_events;
DROP TABLE webhook_events;
ALTER TABLE webhook_events_plain RENAME TO webhook_events;
ALTER TABLE webhook_events ADD CONSTRAINT pk_webhook_events PRIMARY KEY (id);
ALTER TABLE webhook_events ADD CONSTRAINT uq_webhook_events_sequence UNIQUE (sequence);
ALTER TABLE webhook_events ALTER COLUMN sequence ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('webhook_events', 'sequence'),
              (SELECT coalesce(max(sequence), 0) + 1 FROM webhook_events), false);
CREATE INDEX ix_webhook_events_unrelayed ON webhook_events (sequence) WHERE relayed_at IS NULL;
CREATE UNIQUE INDEX ix_webhook_events_feed_position ON webhook_events (feed_position) WHERE feed_position IS NOT NULL;
DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = d.event_id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT fk_webhook_deliveries_event_id_webhook_events
    FOREIGN KEY (event_id) REFERENCES webhook_events (id);
"""


def _statements(script: str) -> list[str]:
    """One statement each (the DO block is one): the driver runs a single statement per call."""
    out: list[str] = []
    for part in script.split(";\n"):
        if out and out[-1].lstrip().startswith("DO $$") and not out[-1].rstrip().endswith("END $$"):
            out[-1] += ";\n" + part
        elif part.strip():
            out.append(part)
    return out


def upgrade() -> None:
    for statement in _statements(_UPGRADE.replace("%(ahead)s", str(AHEAD_DAYS - 1))):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(_DOWNGRADE):
        op.execute(statement)
