"""Metrics and traces for the API process.

- Prometheus: per-endpoint latency and status by URL rule (bounded labels). Under gunicorn
  with PROMETHEUS_MULTIPROC_DIR set, every worker writes to the shared directory and any
  of them serves the aggregate (gunicorn.conf.py marks dead workers).
- OpenTelemetry: Flask, SQLAlchemy, Redis and Celery publishing are instrumented when
  OTEL_EXPORTER_OTLP_ENDPOINT is set; the trace id goes into the logs and the response.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from functools import wraps
from typing import Any

from flask import Flask, Response, request
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from core.config import Settings
from core.observability import metrics, tracing
from core.resources import Resources
from web.problems import problem

API_PREFIX = "/api/v1"
# Request latency buckets: 0.3 s is the latency SLO's threshold (README "Operations"), so the
# share of POST /transfers answered within it is a bucket, not an interpolation.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)


def init_app(app: Flask, res: Resources) -> None:
    _metrics(app)
    _guard_metrics(app, res.settings)
    metrics.touch_known_labels()
    if tracing.configure("bank-api"):
        _instrument(app, res)
        app.after_request(_traceparent)


def _metrics(app: Flask) -> None:
    options = {"group_by": "url_rule", "default_labels": {"service": "api"}, "buckets": REQUEST_BUCKETS}
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        exporter: PrometheusMetrics = GunicornInternalPrometheusMetrics(app, **options)
    else:
        exporter = PrometheusMetrics(app, **options)
    app.add_url_rule(f"{API_PREFIX}/metrics", endpoint="prometheus_metrics")  # same view, under the base path
    with contextlib.suppress(ValueError):  # already registered by an earlier app in this process (tests)
        exporter.info("app_info", "Transfer processor API", version="v1")


def _guard_metrics(app: Flask, settings: Settings) -> None:
    """/metrics on the API port shows money volume: never public in production.

    With METRICS_TOKEN set (any environment) a scrape needs ``Authorization: Bearer <token>``;
    in production without it /metrics is not served on this port at all (serve it on
    API_METRICS_PORT instead, gunicorn.conf.py). Development and tests keep it open.
    """
    token = settings.metrics_token
    if token is None and settings.app_env != "production":
        return
    view = app.view_functions["prometheus_metrics"]
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    @wraps(view)
    def guarded() -> Any:
        if expected is None:
            return problem(404, "NOT_FOUND", "the requested URL was not found")
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return problem(401, "UNAUTHORIZED", "metrics need the scrape token",
                           headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return view()

    app.view_functions["prometheus_metrics"] = guarded


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
