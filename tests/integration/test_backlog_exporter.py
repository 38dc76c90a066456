"""The backlog exporter against real Postgres, Redis and broker: a dependency it cannot read is
reported (error counter, bank_dependency_up 0), and the gauges it feeds stay as last measured
with their "measured" time; never a fresh 0 that looks like an empty queue (issue 19 item 15)."""

from __future__ import annotations

import time
import uuid

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
