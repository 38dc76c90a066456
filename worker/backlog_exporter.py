"""The backlog exporter: ``python -m worker.backlog_exporter``.

Measures what is waiting (pending transfers and the oldest one's age, Celery queue depths,
the webhook outbox and the oldest undelivered event, the audit seal lag) and the money counters
Postgres alone sees whole (holds and how they ended, captures, refunds) straight from
Postgres and the broker, in a process of its own, and serves the gauges on
BACKLOG_EXPORTER_PORT (default 9809). No Celery worker or beat is involved: the gauges keep
moving while every settlement pool is stopped or hung, which is when the alerts on them
matter. Each measurement stamps a timestamp gauge, so a stuck exporter alerts too.

A dependency it cannot read (Postgres, the broker, Redis) is reported, never papered over: the
gauges it feeds stay as last measured (with their "measured" time), bank_dependency_up goes to
0 and bank_backlog_measure_errors_total counts the failure, so DependencyDown names it. It also
exports the queues the deployment configures and beat's last tick (worker/heartbeat.py), so
every configured queue's heartbeat and the scheduler itself are watched.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from celery import Celery
from prometheus_client import CollectorRegistry, start_http_server
from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from core.config import get_settings
from core.db import make_engine, make_session_factory
from core.observability.backlog import measure
from core.observability.backlog_gauges import BacklogGauges
from core.observability.money import measure_money
from worker.app import create_celery, queues
from worker.heartbeat import read_scheduler_tick

log = structlog.get_logger(__name__)

DEFAULT_PORT = 9809
DEPENDENCIES = ("postgres", "broker", "redis")
CONNECT_TIMEOUT_SECONDS = 5  # a black-holed dependency must not stall the loop (and its alert)


def _missing_queue(error: Exception) -> bool:
    """A passive declare of a queue that does not exist yet: AMQP 404 NOT_FOUND (kombu's Redis
    transport raises the same channel error for an empty, never-declared list)."""
    return str(getattr(error, "reply_code", "")) == "404"


def queue_depths(celery: Celery, names: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting per queue, as the broker reports them (Redis lists or AMQP queues)."""
    depths = {}
    with celery.connection_for_read() as conn:
        # A broker outage must not stall the loop.
        conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_SECONDS)
        channel = conn.default_channel
        for queue in names:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except Exception as error:
                if not _missing_queue(error):
                    raise  # the broker failed: no depth is known, none is reported as 0
                channel = conn.channel()  # AMQP closes the channel on a 404
                depths[queue] = 0  # a queue not declared yet has no backlog
    return depths


def measure_once(
    sessions: sessionmaker[Session],
    celery: Celery,
    redis: Redis,
    names: tuple[str, ...],
    gauges: BacklogGauges,
    max_requeues: int,
) -> None:
    """Each dependency apart: one down leaves the others' gauges fresh, and its own as they were."""
    try:
        with sessions() as session:
            backlog = measure(session, datetime.now(UTC), max_requeues)
            money = measure_money(session)
    except Exception:
        log.exception("backlog_measure_failed", source="postgres")
        gauges.measured("postgres", ok=False)
    else:
        gauges.set_backlog(backlog)
        gauges.money.totals = money
        gauges.measured("postgres", ok=True)
    try:
        depths = queue_depths(celery, names)
    except Exception:
        log.exception("backlog_measure_failed", source="broker")
        gauges.measured("broker", ok=False)
    else:
        gauges.set_queue_depths(depths)
        gauges.measured("broker", ok=True)
    try:
        tick = read_scheduler_tick(redis)
    except Exception:
        log.exception("backlog_measure_failed", source="redis")
        gauges.measured("redis", ok=False)
    else:
        gauges.set_scheduler_tick(tick)
        gauges.measured("redis", ok=True)


def main() -> None:
    """This process's composition root: the settings, once, and what is built from them."""
    settings = get_settings()
    logs.configure(settings.log_level)
    os.environ.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_SECONDS))  # libpq's own connect timeout
    celery, names = create_celery(settings), queues(settings)
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    gauges.configure(names, DEPENDENCIES)
    sessions = make_session_factory(make_engine(settings, pool_size=1))
    redis = Redis.from_url(
        settings.redis_url, socket_timeout=CONNECT_TIMEOUT_SECONDS, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS
    )
    port = int(os.environ.get("BACKLOG_EXPORTER_PORT", DEFAULT_PORT))
    start_http_server(port, addr=os.environ.get("BACKLOG_EXPORTER_ADDR", "0.0.0.0"), registry=registry)  # noqa: S104
    log.info("backlog_exporter_listening", port=port, interval_seconds=settings.metrics_refresh_seconds)

    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop.is_set():
        started = time.monotonic()
        measure_once(sessions, celery, redis, names, gauges, settings.sweeper_max_requeues)
        stop.wait(max(0.0, settings.metrics_refresh_seconds - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
