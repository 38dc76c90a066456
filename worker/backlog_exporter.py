"""The backlog exporter: ``python -m worker.backlog_exporter``.

Measures what is waiting (pending transfers and the oldest one's age, Celery queue depths,
the webhook outbox and the oldest undelivered event, the audit seal lag) straight from
Postgres and the broker, in a process of its own, and serves the gauges on
BACKLOG_EXPORTER_PORT (default 9809). No Celery worker or beat is involved: the gauges keep
moving while every settlement pool is stopped or hung, which is when the alerts on them
matter. Each measurement stamps a timestamp gauge, so a stuck exporter alerts too.
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
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from core.config import get_settings
from core.db import make_engine, make_session_factory
from core.observability.backlog import measure
from core.observability.backlog_gauges import BacklogGauges
from worker.app import create_celery, queues

log = structlog.get_logger(__name__)

DEFAULT_PORT = 9809


def queue_depths(celery: Celery, names: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting per queue, as the broker reports them (Redis lists or AMQP queues)."""
    depths = {}
    with celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=5)  # a broker outage must not stall the loop
        channel = conn.default_channel
        for queue in names:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except Exception:  # a queue not declared yet has no backlog
                channel = conn.channel()
                depths[queue] = 0
    return depths


def measure_once(
    sessions: sessionmaker[Session], celery: Celery, names: tuple[str, ...], gauges: BacklogGauges, max_requeues: int
) -> None:
    """Postgres and the broker apart: either one down leaves the other's gauges fresh."""
    try:
        with sessions() as session:
            gauges.set_backlog(measure(session, datetime.now(UTC), max_requeues))
    except Exception:
        log.exception("backlog_measure_failed", source="postgres")
    try:
        gauges.set_queue_depths(queue_depths(celery, names))
    except Exception:
        log.exception("backlog_measure_failed", source="broker")


def main() -> None:
    """This process's composition root: the settings, once, and what is built from them."""
    settings = get_settings()
    logs.configure(settings.log_level)
    celery, names = create_celery(settings), queues(settings)
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    sessions = make_session_factory(make_engine(settings, pool_size=1))
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
        measure_once(sessions, celery, names, gauges, settings.sweeper_max_requeues)
        stop.wait(max(0.0, settings.metrics_refresh_seconds - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
