"""Metrics and traces for Celery workers (prefork).

The main process serves /metrics on WORKER_METRICS_PORT, aggregating what every child
wrote to PROMETHEUS_MULTIPROC_DIR. Each child sets up tracing after the fork (exporter
threads do not survive fork) and instruments Celery, SQLAlchemy, Redis and httpx.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from celery.signals import task_prerun, task_retry, worker_init, worker_process_init, worker_process_shutdown
from sqlalchemy import Engine

from core.observability import metrics, tracing

log = structlog.get_logger(__name__)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    port = os.environ.get("WORKER_METRICS_PORT")
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:  # solo/threads pool: one process, the default registry is the truth
        from prometheus_client import REGISTRY

        registry = REGISTRY
    start_http_server(int(port), addr=os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0"), registry=registry)  # noqa: S104
    log.info("worker_metrics_listening", port=int(port))


@worker_process_init.connect
def _trace_child(**_: Any) -> None:
    metrics.touch_known_labels()
    if not tracing.configure("bank-worker"):
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    CeleryInstrumentor().instrument()
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


def instrument_engine(engine: Engine) -> None:
    """SQL spans for an engine this child created (lazily, after the fork)."""
    if tracing.enabled():
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(engine=engine)


@worker_process_shutdown.connect
def _child_gone(pid: int | None = None, **_: Any) -> None:
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown:
        shutdown()  # flush spans still batched
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


@task_retry.connect
def _count_retry(sender: Any = None, **_: Any) -> None:
    metrics.TASK_RETRIES.labels(task=getattr(sender, "name", "unknown")).inc()


@task_prerun.connect
def _fresh_log_context(task_id: str | None = None, **_: Any) -> None:
    """Every task starts with a clean log context: a prefork child runs task after task, and the
    ids bound by one (a transfer's request id) must never appear on the next one's lines."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id)
