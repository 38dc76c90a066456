"""``python -m bench.accept_cpu``: the API's own CPU per accepted ``POST /transfers``, in-process.

The real app (``web.create_app``, metrics in multiprocess mode as under the Procfile's server)
on a fresh database ``bench_accept_cpu``, funded customers set up through the API, then rounds of
``--requests`` accepts called straight through the WSGI app, one at a time, each measured with
``time.process_time()`` (this process's CPU: Postgres and Redis are not in it). No server, no
threads, no load generator: what a code change costs or saves per accept shows through a busy
machine far better than a closed loop's rate does. Alternate it between trees (before, after) to
compare; the harness's own share (a WSGI environ per request) is in every figure alike.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path.cwd()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.accept_cpu", description=__doc__)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432", help="the Postgres server")
    p.add_argument("--database", default="bench_accept_cpu", help="dropped and created again")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="flushed at start")
    p.add_argument("--customers", type=int, default=10)
    p.add_argument("--requests", type=int, default=1000, help="accepts per round")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--label", default="", help="a name for this tree or variant, echoed in the output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Before prometheus_client is imported: it picks its value class from the environment.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="accept-cpu-"))
    from bench import db

    db_url = db.recreate(args.database_url, args.database)
    sa_url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {**os.environ, "DATABASE_URL": sa_url}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()

    from core.config import Settings
    from web import create_app

    generous = "1000000 per minute"
    settings = Settings(
        database_url=sa_url,
        redis_url=args.redis_url,
        celery_broker_url=args.redis_url,
        app_env="development",
        log_level=args.log_level,
        rate_limit_transfers=generous,
        rate_limit_register=generous,
        rate_limit_login_ip=generous,
        rate_limit_login_account=generous,
        access_token_minutes=720,
    )
    app = create_app(settings)
    customers = _customers(app, args.customers)
    _accepts(app, customers, args.warmup)
    rounds = [_accepts(app, customers, args.requests) for _ in range(args.rounds)]
    cpu = [r["cpu_ms"] for r in rounds]
    print(json.dumps({
        "label": args.label,
        "tree": str(ROOT),
        "requests_per_round": args.requests,
        "cpu_ms_per_accept": [round(c, 3) for c in cpu],
        "cpu_ms_per_accept_median": round(statistics.median(cpu), 3),
        "wall_ms_per_accept": [round(r["wall_ms"], 3) for r in rounds],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }), flush=True)  # fmt: skip
    app.extensions["bank"].close()


def _customers(app: Any, count: int) -> list[dict[str, str]]:
    import httpx

    from bench import customers
    from core.identity import admin as admins
    from web.context import transaction

    email, password = f"admin.{uuid.uuid4().hex[:8]}@example.com", "admin password for the bench"
    with app.app_context(), transaction() as session:
        admins.create_admin(session, email=email, password=password, full_name="Bench")
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://bench/api/v1", timeout=60) as api:
        admin = customers.admin_headers(api, email, password)
        made = [customers.create_one(api, admin, f"cpu{i}") for i in range(count)]
    return [{"account": c.account_id, "auth": f"Bearer {c.token}"} for c in made]


def _body(source: str, destination: str, pin: str) -> bytes:
    body = {"source_account_id": source, "destination_account_id": destination, "amount": 1, "currency": "USD"}
    return json.dumps({**body, "pin": pin}).encode()


def _accepts(app: Any, customers: list[dict[str, str]], count: int) -> dict[str, float]:
    from bench.customers import PIN

    n = len(customers)
    bodies = [_body(c["account"], customers[(i + 1) % n]["account"], PIN) for i, c in enumerate(customers)]
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> None:
        statuses.append(status)

    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        j = i % n
        body = bodies[j]
        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/api/v1/transfers",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": customers[j]["auth"],
            "HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4()),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        result = app(environ, start_response)
        try:
            for _chunk in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    refused = [s for s in statuses if not s.startswith("202")]
    if refused:
        raise SystemExit(f"{len(refused)} of {count} accepts were not 202, e.g. {refused[:3]}")
    return {"cpu_ms": cpu * 1000 / count, "wall_ms": wall * 1000 / count}


if __name__ == "__main__":
    main()
