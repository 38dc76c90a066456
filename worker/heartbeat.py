"""Liveness signals: the per-queue heartbeat (each pool takes work from each queue it should
consume) and the scheduler's tick (beat itself is alive and publishing)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import shared_task
from celery.signals import after_task_publish, beat_embedded_init, beat_init
from redis import Redis

from core.config import get_settings
from core.observability import metrics

log = structlog.get_logger(__name__)

# Beat writes the time of its last publish here (Redis, REDIS_URL); the backlog exporter reads it
# into bank_scheduler_last_tick_timestamp_seconds, so a dead beat is named by an alert of its
# own (SchedulerDown) instead of showing only as every queue's heartbeat freezing at once.
SCHEDULER_TICK_KEY = "bank:scheduler:last_tick"
_TICK_EVERY_SECONDS = 1.0  # at most one write a second, however many tasks a tick publishes


@shared_task(name="worker.tasks.heartbeat", ignore_result=True)
def heartbeat(queue: str) -> None:
    """Beat sends one to every queue: its timestamp advances only while a pool takes work from
    that queue, so a stopped, hung or missing pool shows per queue (alert NoWorkerHeartbeat)."""
    metrics.WORKER_HEARTBEAT.labels(queue=queue).set_to_current_time()


class SchedulerTick:
    """Records beat's publishes in Redis (throttled). Beat publishes a heartbeat to every queue
    each METRICS_REFRESH_SECONDS, so the recorded time never lags a live beat by more than that."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.written_at = 0.0

    def __call__(self, **_: Any) -> None:
        now = time.time()
        if now - self.written_at < _TICK_EVERY_SECONDS:
            return
        try:
            self.redis.set(SCHEDULER_TICK_KEY, repr(now))
            self.written_at = now
        except Exception as error:  # Redis down: the tick goes stale and the exporter reports it
            log.warning("scheduler_tick_not_recorded", error=type(error).__name__)


def read_scheduler_tick(redis: Redis) -> float | None:
    """Beat's last recorded publish (epoch seconds), or None if no beat ever ran against this Redis."""
    value = redis.get(SCHEDULER_TICK_KEY)
    return float(value) if value is not None else None


@beat_init.connect
@beat_embedded_init.connect
def _record_scheduler_ticks(**_: Any) -> None:
    """Only the beat process (standalone, or embedded in a worker with --beat) records ticks."""
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    after_task_publish.connect(SchedulerTick(redis), weak=False)
