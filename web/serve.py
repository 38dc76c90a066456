"""``python -m web.serve``: the API under the WSGI server ``WEB_SERVER`` names.

- ``gunicorn`` (the default): ``gunicorn.conf.py`` (2 processes x 4 gthreads, multiprocess
  metrics, the master's API_METRICS_PORT, its own refusals answered as problem+json).
- ``granian``: the Rust HTTP server's WSGI interface with the same budget (WEB_CONCURRENCY
  processes x WEB_THREADS blocking threads). What gunicorn.conf.py does in its hooks is done
  here: the main process serves every worker's metrics on API_METRICS_PORT (PROMETHEUS_MULTIPROC_DIR),
  a worker that dies is started again, a worker that does not stop within WEB_GRACEFUL_SECONDS of
  SIGTERM is killed. Oversized request lines and headers are refused by the app itself as
  problem+json (web/hardening.py), the same answers gunicorn gives.

``--bind HOST:PORT`` (default ``0.0.0.0:$PORT``, 8000); any other argument goes to gunicorn as is
(granian reads ``--workers`` among them and ignores the rest).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SERVERS = ("gunicorn", "granian")


def server_name() -> str:
    name = os.environ.get("WEB_SERVER", "gunicorn").strip().lower() or "gunicorn"
    if name not in SERVERS:
        raise SystemExit(f"WEB_SERVER={name!r}: expected one of {', '.join(SERVERS)}")
    return name


def _bind(argv: list[str]) -> tuple[str, list[str]]:
    """(``HOST:PORT``, the other arguments) from ``--bind HOST:PORT`` or ``--bind=HOST:PORT``."""
    bind, rest, args = f"0.0.0.0:{os.environ.get('PORT', '8000')}", [], iter(argv)
    for arg in args:
        if arg == "--bind":
            bind = next(args)
        elif arg.startswith("--bind="):
            bind = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return bind, rest


def gunicorn(bind: str, extra: list[str]) -> None:
    binary = str(Path(sys.executable).with_name("gunicorn"))
    os.execv(binary, [binary, "web:create_app()", "--bind", bind, *extra])  # noqa: S606


def _option(extra: list[str], name: str, default: str) -> str:
    """The value of ``name`` among gunicorn's arguments (``--workers 2``), else ``default``."""
    for i, arg in enumerate(extra):
        if arg == name and i + 1 < len(extra):
            return extra[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def granian(bind: str, extra: list[str]) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    host, port = bind.rsplit(":", 1)
    server = Granian(
        "web:create_app",
        factory=True,
        address=host,
        port=int(port),
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        websockets=False,
        workers=int(_option(extra, "--workers", os.environ.get("WEB_CONCURRENCY", "2"))),
        blocking_threads=int(os.environ.get("WEB_THREADS", "4")),
        # Headers must arrive within 10 s (a slow client holds no thread meanwhile: the Rust
        # side reads the request; a blocking thread is taken only once it is whole).
        http1_settings=HTTP1Settings(header_read_timeout=10_000, keep_alive=True),
        log_level=LogLevels.warning,  # the app logs each request itself (web.access, with its id)
        respawn_failed_workers=True,
        respawn_interval=1.0,
        workers_kill_timeout=int(os.environ.get("WEB_GRACEFUL_SECONDS", "30")),
    )
    server.on_startup(_metrics_port)
    server.serve()


def _metrics_port() -> None:
    """API_METRICS_PORT: every worker's metrics from the main process, off the public port (as
    gunicorn.conf.py's ``when_ready`` does on the gunicorn master)."""
    port = os.environ.get("API_METRICS_PORT")
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(int(port), addr=os.environ.get("API_METRICS_ADDR", "0.0.0.0"), registry=registry)  # noqa: S104


def main(argv: list[str] | None = None) -> None:
    bind, extra = _bind(sys.argv[1:] if argv is None else argv)
    if server_name() == "granian":
        granian(bind, extra)
    else:
        gunicorn(bind, extra)


if __name__ == "__main__":
    main()
