"""``python -m devtools demo|serve``: run the whole system on this machine and show the flow.

Uses DATABASE_URL / REDIS_URL / CELERY_BROKER_URL when set, else embedded servers under .data/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from devtools import processes, services
from devtools.demo import run_demo

ADMIN_EMAIL = os.environ.get("ADMIN_EMAIL", "admin@bank.local")
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "admin-password-for-demo-only")


def _metrics_dir(root: Path, name: str) -> dict[str, str]:
    """A fresh multiprocess-metrics directory: stale files from a previous run would add up."""
    path = root / ".data" / f"prom-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(path)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools")
    parser.add_argument("mode", choices=["demo", "serve"], nargs="?", default="demo")
    parser.add_argument("--keep", action="store_true", help="after the demo, keep the system running")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()

    root = services.ROOT
    log_dir = root / ".data" / "logs"
    svc = services.start()
    for line in svc.embedded:
        print(f"· started {line}")
    database = "bank" if os.environ.get("DATABASE_URL") is None else None
    db_url = services.ensure_database(svc, database) if database else os.environ["DATABASE_URL"]
    env = {
        **svc.env("bank"),
        "DATABASE_URL": db_url,
        "APP_ENV": os.environ.get("APP_ENV", "development"),
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    procs: list[processes.Proc] = []

    def stop(*_: object) -> None:
        for p in reversed(procs):
            p.stop()
        svc.stop()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print("· alembic upgrade head")
        processes.migrate(env, root)
        processes.run([str(processes.BIN / "flask"), "--app", "web", "create-admin"], env, root)
        procs.append(processes.start_api({**env, **_metrics_dir(root, "api")}, log_dir, root, args.port))
        print(f"· API on http://127.0.0.1:{args.port} (docs: /docs, metrics: /metrics); logs in {log_dir}")
        worker_env = {**env, **_metrics_dir(root, "worker"), "WORKER_METRICS_PORT": str(args.port + 1)}
        # The demo's scheduled transfer runs within a second or two of its time, not the default 10 s
        # (production's setting is untouched: this is the dev stack's worker only).
        worker_env["SCHEDULE_INTERVAL_SECONDS"] = os.environ.get("SCHEDULE_INTERVAL_SECONDS", "1")
        procs.append(processes.start_worker("worker", worker_env, log_dir, root, beat=True))
        print(f"· celery worker ready (metrics: http://127.0.0.1:{args.port + 1}/metrics)")
        procs.append(processes.start_backlog_exporter(env, log_dir, root, args.port + 2))
        print(f"· backlog exporter ready (metrics: http://127.0.0.1:{args.port + 2}/metrics)")
        if args.mode == "demo":
            print("\n== demo: the user flow over HTTP ==")
            run_demo(f"http://127.0.0.1:{args.port}", ADMIN_EMAIL, ADMIN_PASSWORD)
            print("== demo complete ==\n")
        if args.mode == "serve" or args.keep:
            print(f"System running; admin {ADMIN_EMAIL}. Ctrl-C stops it.")
            print(f"Operators' console: http://127.0.0.1:{args.port}/console/ (log in as that admin)")
            while all(p.popen.poll() is None for p in procs):
                time.sleep(1)
            return 1
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        print("· stopping")
        stop()


if __name__ == "__main__":
    sys.exit(main())
