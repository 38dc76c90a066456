"""``python -m bench.floor``: the ceiling this stack puts on ``POST /transfers`` on this machine.

Serves ``bench/floor_app.py`` (one row per request, then the shared layers one by one) under each
server of ``--servers`` sized like the system's (2 processes x 4 threads: gunicorn gthread, or
granian's WSGI with 4 blocking threads), alternating servers step by step, drives it with the spread
mode's wrk script and connections, and runs pgbench on the same Postgres first. One JSON line per
layer set on stdout (also appended to .data/bench/results.jsonl). The real endpoint does all of
this and its own checks, so it cannot beat these figures on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import db, load, pgbench, system
from bench.floor_app import TABLE_DDL, token
from bench.run import OUT_DIR, ROOT, git_commit, machine, say
from devtools import processes

DATABASE = "bench_floor"
STEPS = ("", "jwt", "jwt,limiter1", "jwt,limiter1,nudge", "jwt,limiter1,nudge,pre_ping")
SERVERS = ("gunicorn", "granian")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    p.add_argument("--duration", type=float, default=15, help="seconds of load per step, and of pgbench")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="flushed at start")
    p.add_argument("--steps", default=";".join(STEPS), help="';'-separated layer sets (see bench/floor_app.py)")
    p.add_argument("--servers", default="gunicorn,granian", help="comma-separated: gunicorn,granian; each step "
                   "runs under each, in turn")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = load.find_wrk()
    pgbench_bin = pgbench.find_pgbench()
    if wrk is None or pgbench_bin is None:
        print(load.WRK_MISSING if wrk is None else "pgbench is not installed (postgresql-client)", file=sys.stderr)
        return 2
    log_dir = OUT_DIR / "logs" / "floor"
    conninfo = db.recreate(args.database_url, DATABASE)
    with psycopg.connect(conninfo) as conn:
        conn.execute(TABLE_DDL)  # type: ignore[arg-type]
    redis.Redis.from_url(args.redis_url).flushdb()
    plan = load.write_plan([(token(str(uuid.uuid4())), str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(50)],
                           OUT_DIR / "plans")  # fmt: skip
    say(f"pgbench -T {args.duration:.0f}")
    tps = pgbench.run(pgbench_bin, args.database_url, args.duration, log_dir)
    meta = {"git_commit": git_commit(), "machine": machine(db.url(args.database_url, "postgres"))}
    try:
        servers = [x.strip() for x in args.servers.split(",") if x.strip()]
        for step, server in ((step, server) for step in args.steps.split(";") for server in servers):
            result = measure(args, wrk, plan, conninfo, step, log_dir, server)
            result.update(pgbench_tps=tps, accepted_per_pgbench_tps=round(result["accepted_per_s"] / tps, 4), **meta)
            line = json.dumps(result)
            print(line, flush=True)
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            with (OUT_DIR / "results.jsonl").open("a") as out:
                out.write(line + "\n")
    finally:
        plan.unlink(missing_ok=True)
    return 0


def server_command(server: str, port: int) -> list[str]:
    """The floor app under ``server``, with the API's budget: 2 processes x 4 threads."""
    if server == "granian":
        return [
            str(processes.BIN / "granian"), "bench.floor_app:app", "--interface", "wsgi", "--http", "1",
            "--no-ws", "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--blocking-threads", "4",
            "--log-level", "warning",
        ]  # fmt: skip
    if server == "gunicorn":
        return [
            str(processes.BIN / "gunicorn"), "bench.floor_app:app",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--worker-class", "gthread",
            "--keep-alive", "75", "--log-level", "warning",
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}: {', '.join(SERVERS)}")


def measure(
    args: argparse.Namespace, wrk: str, plan: Path, conninfo: str, step: str, log_dir: Path, server: str = "gunicorn"
) -> dict[str, Any]:
    port = processes.free_port()
    env = {
        "FLOOR_LAYERS": step,
        "FLOOR_DATABASE_URL": conninfo.replace("postgresql://", "postgresql+psycopg://", 1),
        "FLOOR_REDIS_URL": args.redis_url,
    }
    api = processes.spawn(f"floor-{server}", server_command(server, port), env, log_dir, ROOT)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", api)
        say(f"floor [{step or 'one row'}] under {server}: wrk -c{args.connections} -d{args.duration:.0f}s")
        cpu0, (busy0, total0) = system.cpu_seconds_of_groups({api.popen.pid}), system.cpu_times()
        run = load.run_wrk(wrk, f"http://127.0.0.1:{port}", plan, connections=args.connections,
                           threads=args.threads, duration_s=args.duration, log_dir=log_dir)  # fmt: skip
        cpu1, (busy1, total1) = system.cpu_seconds_of_groups({api.popen.pid}), system.cpu_times()
    finally:
        api.stop()
    duration_s = run.report.get("duration_us", 0) / 1e6 or run.wall_s
    requests = sum(run.status_counts.values())
    return {
        "mode": "floor",
        "server": server,
        "layers": ["one row"] + [layer for layer in step.split(",") if layer],
        "accepted_per_s": round(run.accepted / duration_s, 1),
        "accept_latency_ms": run.latency_ms(),
        "non_202": sum(n for s, n in run.status_counts.items() if s != "202"),
        # Less noisy than the rate on a shared machine: what one request costs the API processes.
        "api_cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / requests, 3) if requests else None,
        "api_cpu_cores": round((cpu1 - cpu0) / run.wall_s, 2),
        "machine_cpu_busy_during_load": round((busy1 - busy0) / (total1 - total0), 3),
        "loadgen_cpu_share": round(run.cpu_share(os.cpu_count() or 1), 4),
        "connections": args.connections,
        "duration_s": args.duration,
    }


if __name__ == "__main__":
    sys.exit(main())
