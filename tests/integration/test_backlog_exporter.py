"""The backlog exporter against real Postgres, Redis and broker: a dependency it cannot read is
reported (error counter, bank_dependency_up 0), and the gauges it feeds stay as last measured
with their "measured" time; never a fresh 0 that looks like an empty queue (issue 19 item 15)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from redis import Redis

from core.observability.backlog_gauges import BacklogGauges
from devtools.processes import free_port
from worker.app import create_celery
from worker.backlog_exporter import measure_once
from worker.heartbeat import SCHEDULER_TICK_KEY, SchedulerTick


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_broker_error_is_reported_not_measured_as_an_empty_queue(  # type: ignore[no-untyped-def]
    sessions, settings, redis_client: Redis
) -> None:
    queue = f"test-exporter-{uuid.uuid4().hex[:8]}"
    celery = create_celery(settings, set_as_current=False)
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    gauges.configure((queue,), ("postgres", "broker", "redis"))
    for _ in range(3):
        redis_client.rpush(queue, "message")
    measure_once(sessions, celery, redis_client, (queue,), gauges, settings.sweeper_max_requeues)
    assert _value(registry, "bank_queue_length", queue=queue) == 3
    assert _value(registry, "bank_dependency_up", dependency="broker") == 1
    assert _value(registry, "bank_dependency_up", dependency="postgres") == 1
    assert _value(registry, "bank_queue_configured", queue=queue) == 1
    measured_at = _value(registry, "bank_queue_length_measured_timestamp_seconds")
    assert measured_at is not None

    # The broker answers, but not with a queue: a real error from the broker (WRONGTYPE). The
    # old loop caught it as "queue not declared yet" and exported a fresh 0.
    redis_client.delete(queue)
    redis_client.set(queue, "not a list")
    try:
        time.sleep(0.01)
        measure_once(sessions, celery, redis_client, (queue,), gauges, settings.sweeper_max_requeues)
    finally:
        redis_client.delete(queue)
    assert _value(registry, "bank_queue_length", queue=queue) == 3  # as last measured
    assert _value(registry, "bank_queue_length_measured_timestamp_seconds") == measured_at
    assert _value(registry, "bank_dependency_up", dependency="broker") == 0
    assert _value(registry, "bank_backlog_measure_errors_total", source="broker") == 1
    assert _value(registry, "bank_dependency_up", dependency="postgres") == 1  # the others stay fresh


def test_an_unreachable_broker_and_redis_are_named(sessions, settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    dead = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", dead)  # Celery prefers it to the app's broker argument
    celery = create_celery(settings.model_copy(update={"celery_broker_url": dead}), set_as_current=False)
    redis = Redis.from_url(dead, socket_connect_timeout=1, socket_timeout=1)
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    gauges.configure(("transfers",), ("postgres", "broker", "redis"))
    measure_once(sessions, celery, redis, ("transfers",), gauges, settings.sweeper_max_requeues)
    assert _value(registry, "bank_queue_length", queue="transfers") is None  # never measured: absent, not 0
    assert not _value(registry, "bank_queue_length_measured_timestamp_seconds")  # never measured
    assert _value(registry, "bank_dependency_up", dependency="broker") == 0
    assert _value(registry, "bank_dependency_up", dependency="redis") == 0
    assert _value(registry, "bank_backlog_measure_errors_total", source="redis") == 1
    assert _value(registry, "bank_dependency_up", dependency="postgres") == 1
    assert _value(registry, "bank_backlog_measured_timestamp_seconds") is not None


def test_the_exporter_reads_the_schedulers_last_tick(sessions, settings, redis_client: Redis) -> None:  # type: ignore[no-untyped-def]
    """Beat records its publishes in Redis (throttled to one write a second); the exporter exports it."""
    redis_client.delete(SCHEDULER_TICK_KEY)
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    celery = create_celery(settings, set_as_current=False)
    measure_once(sessions, celery, redis_client, (), gauges, settings.sweeper_max_requeues)
    assert _value(registry, "bank_scheduler_last_tick_timestamp_seconds") is None  # no beat ever: absent
    assert _value(registry, "bank_dependency_up", dependency="redis") == 1

    tick = SchedulerTick(redis_client)
    before = time.time()
    tick()
    tick()  # within the second: not written again
    measure_once(sessions, celery, redis_client, (), gauges, settings.sweeper_max_requeues)
    recorded = _value(registry, "bank_scheduler_last_tick_timestamp_seconds")
    assert recorded is not None and before <= recorded <= time.time()


def _money(sessions, settings, redis_client: Redis) -> CollectorRegistry:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    measure_once(sessions, create_celery(settings, set_as_current=False), redis_client, (), gauges, 60)
    return registry


def _totals(registry: CollectorRegistry) -> dict[str, float]:
    names = {
        **{f"holds {o}": ("bank_holds_total", {"outcome": o}) for o in ("placed", "captured", "voided", "expired")},
        **{
            f"USD {o}": ("bank_hold_minor_units_total", {"currency": "USD", "outcome": o})
            for o in ("placed", "captured", "voided", "expired")
        },
        "captures moved": ("bank_money_moved_minor_units_total", {"currency": "USD", "kind": "CAPTURE"}),
        "refunds": ("bank_refunds_total", {}),
        "refunded": ("bank_refunded_minor_units_total", {"currency": "USD"}),
    }
    return {key: registry.get_sample_value(name, labels) or 0.0 for key, (name, labels) in names.items()}


def test_holds_captures_and_refunds_are_counted_as_postgres_has_them(  # type: ignore[no-untyped-def]
    client, sessions, settings, redis_client: Redis, make_customer, admin_user
) -> None:
    """A mixed run: four holds (captured in part, voided, expired, still held), a plain transfer
    and a refund. The exporter's counters move by exactly what Postgres recorded; captures count in
    money moved (the SRE's run was short by exactly its 81 captures)."""
    from core.transfers.holds import expire_due
    from tests.factories import fund
    from tests.integration.test_api import login
    from tests.integration.test_holds_api import action, due, held
    from tests.integration.test_refunds import pay, refund, settle

    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 5_000)
    before = _totals(_money(sessions, settings, redis_client))

    headers = login(client, alice.email)
    captured, voided, expired, _ = (held(client, sessions, alice, bob, amount) for amount in (400, 200, 100, 50))
    assert action(client, headers, captured["id"], "capture", {"amount": 150}).status_code == 202
    assert action(client, headers, voided["id"], "void").status_code == 202
    due(sessions, expired["id"], timedelta(minutes=1))
    with sessions.begin() as s:
        assert uuid.UUID(expired["id"]) in expire_due(s)
    paid = pay(sessions, alice, bob.account, 300)
    r = refund(client, login(client, bob.email), paid, {"amount": 120})
    assert r.status_code == 202, r.json
    settle(sessions, uuid.UUID(r.json["id"]))

    after = _totals(_money(sessions, settings, redis_client))
    moved = {key: after[key] - before[key] for key in after}
    assert moved == {
        "holds placed": 4,
        "holds captured": 1,
        "holds voided": 1,
        "holds expired": 1,
        "USD placed": 750,
        "USD captured": 150,
        "USD voided": 200,
        "USD expired": 100,
        "captures moved": 150,
        "refunds": 1,
        "refunded": 120,
    }
