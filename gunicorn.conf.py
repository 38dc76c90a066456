"""Loaded by gunicorn from the working directory: process sizing and honest multiprocess metrics.

Sized for the measured best on 2 cores (README "Performance"): 2 processes x 4 threads. A
request spends much of its time waiting on Postgres and Redis, so threads overlap those waits;
more processes only add memory and connections. WEB_CONCURRENCY and WEB_THREADS override.
"""

import os
from typing import Any

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
# Idle keep-alive connections stay open longer than clients and load balancers keep theirs
# (httpx 5 s, ALB 60 s): a server that closes first races a client reusing the connection,
# and the request is lost with "server disconnected" (gunicorn's default is 2 s).
keepalive = int(os.environ.get("WEB_KEEPALIVE_SECONDS", "75"))
# No runtime control socket (gunicorn >= 25.1): nothing uses it, and creating it under
# $XDG_RUNTIME_DIR or ~/.gunicorn warned on every start where neither is usable.
control_socket_disable = True


def post_fork(server: Any, worker: Any) -> None:
    # A request gunicorn refuses itself (request line over limit_request_line = 4094 bytes,
    # oversized headers, a malformed line) gets problem+json like every other error, not HTML.
    from web.server_errors import install

    install()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def when_ready(server: Any) -> None:
    """API_METRICS_PORT: the master serves every worker's metrics on a port of its own, so
    production keeps /metrics off the public API port (web/telemetry.py)."""
    port = os.environ.get("API_METRICS_PORT")
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(int(port), addr=os.environ.get("API_METRICS_ADDR", "0.0.0.0"), registry=registry)  # noqa: S104
