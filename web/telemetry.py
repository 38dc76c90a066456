"""Metrics and traces for the API process.

- Prometheus: per-endpoint latency and status by URL rule (bounded labels). Under gunicorn
  with PROMETHEUS_MULTIPROC_DIR set, every worker writes to the shared directory and any
  of them serves the aggregate (gunicorn.conf.py marks dead workers).
- OpenTelemetry: Flask, SQLAlchemy, Redis and Celery publishing are instrumented when
  OTEL_EXPORTER_OTLP_ENDPOINT is set; the trace id goes into the logs and the response.
"""

from __future__ import annotations

import contextlib
import os

from flask import Flask, Response
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from core.observability import metrics, tracing
from web.context import Resources

API_PREFIX = "/api/v1"


def init_app(app: Flask, res: Resources) -> None:
    _metrics(app)
    metrics.touch_known_labels()
    if tracing.configure("bank-api"):
        _instrument(app, res)
        app.after_request(_traceparent)


def _metrics(app: Flask) -> None:
    options = {"group_by": "url_rule", "default_labels": {"service": "api"}}
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        exporter: PrometheusMetrics = GunicornInternalPrometheusMetrics(app, **options)
    else:
        exporter = PrometheusMetrics(app, **options)
    app.add_url_rule(f"{API_PREFIX}/metrics", endpoint="prometheus_metrics")  # same view, under the base path
    with contextlib.suppress(ValueError):  # already registered by an earlier app in this process (tests)
        exporter.info("app_info", "Transfer processor API", version="v1")


def _instrument(app: Flask, res: Resources) -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Probes and scrapes would drown the traces that matter.
    FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
    SQLAlchemyInstrumentor().instrument(engine=res.engine)
    RedisInstrumentor().instrument()
    CeleryInstrumentor().instrument()  # publish spans, and the context travels in the message


def _traceparent(response: Response) -> Response:
    trace_id, span_id = tracing.current_ids()
    if trace_id:
        response.headers["traceparent"] = f"00-{trace_id}-{span_id}-01"
    return response
