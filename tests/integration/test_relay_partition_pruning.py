"""The relay's and the delivery worker's statements on the partitioned outbox (migration 0028)
read only the partitions of the days their events fall in: they name each event by its whole key
(id, occurred_at), not by id alone, which would make Postgres probe every day partition (30 kept,
7 ahead, default, legacy) for each id on the hot path of every event. A delivery carries its
event's occurred_at for that (migration 0029).

Shown by EXPLAIN of the very statements ``relay_events`` and ``delivery.claim`` run (captured
with their parameters), on events of one day among several day partitions: each plan names that
day's partition only."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import Connection, event, select, text

from core.db import database_now
from core.events import DomainEvent, EventType
from core.events_partitions import ensure_partitions, partitions
from core.resources import webhook_policy
from core.webhooks import delivery
from core.webhooks.models import WebhookDelivery, WebhookEndpoint
from core.webhooks.relay import relay_events

# A table read or updated: "… Scan … on <partition> <alias>", "Update on <partition> <alias>" (an
# index is named without an alias: "Bitmap Index Scan on <index>  (cost=…").
_SCANNED = re.compile(r" on (webhook_events_\w+) \w")


@contextmanager
def statements(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the driver is given meanwhile, with its parameters."""
    ran: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        ran.append((statement, parameters))

    event.listen(conn.engine, "before_cursor_execute", capture)
    try:
        yield ran
    finally:
        event.remove(conn.engine, "before_cursor_execute", capture)


def scanned(conn: Connection, ran: list[tuple[str, Any]], keep: Callable[[str], bool]) -> list[set[str]]:
    """For each kept statement, the outbox partitions its plan reads or writes."""
    plans = [
        "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
        for statement, parameters in ran
        if keep(statement.lstrip())
    ]
    return [set(_SCANNED.findall(plan)) for plan in plans]


def test_relay_and_claim_read_only_the_partition_of_their_events_day(sessions, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    owner = make_customer()
    policy = webhook_policy(settings)
    with sessions() as s:
        now = database_now(s)
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        ensure_partitions(s, now=now)
        day = today + timedelta(days=3)
        only = [{f"webhook_events_p{day:%Y%m%d}"}]
        assert len([p for p in partitions(s) if p.name.startswith("webhook_events_p")]) >= 5
        # Only this test's events wait for the relay (rolled back with the test's transaction).
        s.execute(text("UPDATE webhook_events SET relayed_at = now() WHERE relayed_at IS NULL"))
        endpoint = WebhookEndpoint(
            id=uuid.uuid4(), user_id=owner.user.id, url="https://example.com/hook", events=["account.credited"]
        )
        endpoint.secret_encrypted = policy.box.encrypt("whsec_test")
        s.add(endpoint)
        for hour in (1, 7, 23):
            ev = DomainEvent(id=uuid.uuid4(), event_type=EventType.ACCOUNT_CREDITED, data={}, owner_ids=[owner.user.id])
            ev.occurred_at = day + timedelta(hours=hour)
            s.add(ev)
        s.flush()
        conn = s.connection()

        with statements(conn) as ran:
            relayed = relay_events(s, now=now, queue_lease=timedelta(minutes=1))
        assert relayed.events == 3 and len(relayed.delivery_ids) == 3
        fan_out = scanned(conn, ran, lambda sql: sql.startswith("INSERT INTO webhook_deliveries"))
        positions = scanned(conn, ran, lambda sql: sql.startswith("UPDATE webhook_events"))
        assert fan_out == only and positions == only

        delivery_id = relayed.delivery_ids[0]
        made = s.scalars(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)).one()
        assert made.event_occurred_at is not None and made.event_occurred_at >= day
        with statements(conn) as ran:
            job = delivery.claim(s, delivery_id, policy=policy, now=now)
        assert job is not None and job.msg_id == str(made.event_id)
        assert scanned(conn, ran, lambda sql: "FROM webhook_events" in sql) == only
