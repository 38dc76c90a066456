"""``python -m bench``: spread, hot, drain and batch modes end to end, each next to pgbench on the same server.

One JSON line per mode on stdout (also appended to .data/bench/results.jsonl); progress on stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import customers, db, load, pgbench, system
from devtools import processes

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / ".data" / "bench"
BANK_DATABASE = "bench_bank"
MODES = ("spread", "hot", "drain", "batch", "openloop", "loglevels")
GENEROUS = "1000000 per minute"
METRICS_PORTS = (
    "API_METRICS_PORT",
    "SETTLE_METRICS_PORT",
    "WEBHOOKS_METRICS_PORT",
    "MAINTENANCE_METRICS_PORT",
    "BACKLOG_EXPORTER_PORT",
)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--modes", default="spread,hot,drain,batch",
                   help="comma-separated: spread,hot,drain,batch,openloop,loglevels")  # fmt: skip
    p.add_argument("--duration", type=float, default=20, help="seconds of load per mode, and of each pgbench run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--spread-customers", type=int, default=50)
    p.add_argument("--hot-customers", type=int, default=8)
    p.add_argument("--drain-transfers", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=100, help="batch mode: transfers per POST /transfers/batch")
    p.add_argument("--batch-atomic", action="store_true", help='batch mode: send "atomic": true')
    p.add_argument("--final-deadline", type=float, help="seconds for every accepted transfer to be final "
                   "(default: 120 + 1 s per 20 transfers)")  # fmt: skip
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432",
                   help="the Postgres server (the harness uses its own bench_bank and bench_pgbench databases); "
                   "with --no-start, the running system's database (read for the figures and checks)")  # fmt: skip
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="flushed at start")
    p.add_argument("--broker-url", help="CELERY_BROKER_URL (default: the Redis of --redis-url)")
    p.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the system's processes")
    p.add_argument("--web-server", default=os.environ.get("WEB_SERVER", "gunicorn"), choices=("gunicorn", "granian"),
                   help="WEB_SERVER of the Procfile's web entry (python -m web.serve)")  # fmt: skip
    p.add_argument("--openloop-rate", type=float, help="openloop: requests/s (default: --openloop-share of the "
                   "closed loop's accepted/s, from spread in this run or a short wrk run)")  # fmt: skip
    p.add_argument("--openloop-share", type=float, default=0.5)
    p.add_argument("--openloop-duration", type=float, default=60)
    p.add_argument("--loglevels", default="WARNING,INFO,WARNING,INFO",
                   help="loglevels: the API's LOG_LEVEL per closed-loop run, alternating")  # fmt: skip
    p.add_argument("--pgbench-scale", type=int, default=10)
    p.add_argument("--no-start", action="store_true", help="use the system already running at --url (no drain)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="with --no-start")
    p.add_argument("--admin-email", default=os.environ.get("ADMIN_EMAIL", "admin@bank.local"))
    p.add_argument("--admin-password", default=os.environ.get("ADMIN_PASSWORD", "admin-password-for-demo-only"))
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        p.error(f"unknown modes: {', '.join(sorted(unknown))}")
    return args


@dataclass
class Context:
    args: argparse.Namespace
    wrk: str
    pgbench: str | None
    base_url: str
    sql: str | None  # the system's database, for figures and checks
    sut: system.System | None
    meta: dict[str, Any]
    log_dir: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    exited: list[str] = field(default_factory=list)  # non-essential Procfile entries that exited


def start_system(args: argparse.Namespace, log_dir: Path) -> system.System:
    say(f"fresh database {BANK_DATABASE}, flushing {args.redis_url}")
    db_url = db.recreate(args.database_url, BANK_DATABASE)
    redis.Redis.from_url(args.redis_url).flushdb()
    port = processes.free_port()
    env = {
        "PATH": f"{processes.BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "APP_ENV": "development",
        "DATABASE_URL": db_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.broker_url or args.redis_url,
        "PORT": str(port),
        # The Procfile's metrics ports on free ones: another system on this host (a second bench,
        # the demo) must not make an entry fail to bind.
        **{name: str(processes.free_port()) for name in METRICS_PORTS},
        "LOG_LEVEL": args.log_level,
        "WEB_SERVER": args.web_server,
        "RATE_LIMIT_TRANSFERS": GENEROUS,
        "RATE_LIMIT_REGISTER": GENEROUS,
        "RATE_LIMIT_LOGIN_IP": GENEROUS,
        "RATE_LIMIT_LOGIN_ACCOUNT": GENEROUS,
        "RATE_LIMIT_OTP_VERIFY": GENEROUS,
        "ACCESS_TOKEN_MINUTES": "720",  # a 50,000-transfer drain must not outlive its tokens
        "ADMIN_EMAIL": args.admin_email,
        "ADMIN_PASSWORD": args.admin_password,
    }
    entries = system.parse_procfile((ROOT / "Procfile").read_text())
    if args.web_server != "gunicorn":
        entries["web"] = web_entry_under(entries["web"], args.web_server)
    sut = system.System(ROOT, env, log_dir, port, entries)
    say(f"Procfile entries: {', '.join(entries)}; settlement workers: {', '.join(sut.worker_names) or 'none'}")
    say("release: " + entries.get("release", "(none)"))
    sut.run_release()
    sut.run_cli("create-admin", "flask --app web create-admin")  # reads ADMIN_EMAIL / ADMIN_PASSWORD
    sut.start_all()
    say(f"system up on {sut.url} (LOG_LEVEL={args.log_level}); logs in {log_dir}")
    return sut


GUNICORN_APP = "gunicorn 'web:create_app()'"


def web_entry_under(command: str, server: str) -> str:
    """The Procfile's web entry through ``python -m web.serve`` (which WEB_SERVER selects), its
    environment and arguments kept: the Procfile itself runs gunicorn."""
    if GUNICORN_APP not in command:
        raise SystemExit(f"--web-server {server}: the Procfile's web entry does not run {GUNICORN_APP}: {command}")
    return command.replace(GUNICORN_APP, "python -m web.serve", 1)


def wait_final(ctx: Context, accounts: list[str], deadline_s: float) -> tuple[bool, float]:
    """Poll until no transfer out of ``accounts`` is PENDING, or the deadline passes."""
    assert ctx.sql is not None
    started = time.monotonic()
    last_report = started
    while True:
        left = db.unfinished(ctx.sql, accounts)
        waited = time.monotonic() - started
        if left == 0:
            return True, waited
        if waited > deadline_s:
            say(f"deadline: {left} transfers still not final after {waited:.0f} s")
            return False, waited
        if ctx.sut:
            for gone in ctx.sut.check_alive():
                if gone not in ctx.exited:
                    ctx.exited.append(gone)
                    say(f"WARNING: {gone} exited during the run; see its log")
        if time.monotonic() - last_report > 10:
            say(f"  {left} not final yet ({waited:.0f} s)")
            last_report = time.monotonic()
        time.sleep(0.5)


def run_pgbench(ctx: Context) -> float | None:
    if not ctx.pgbench:
        return None
    server = ctx.sql or db.url(ctx.args.database_url, "postgres")
    say(f"pgbench -i -s {ctx.args.pgbench_scale}; -c 16 -j 2 -T {ctx.args.duration:.0f} -M prepared")
    tps = pgbench.run(ctx.pgbench, server, ctx.args.duration, ctx.log_dir, ctx.args.pgbench_scale)
    say(f"  pgbench tps = {tps:.0f}")
    return tps


def plan_rows(pattern: str, people: list[customers.Customer]) -> list[tuple[str, str, str]]:
    if pattern == "hot":
        src = people[0]
        return [(src.token, src.account_id, d.account_id) for d in people[1:]]
    return [(a.token, a.account_id, b.account_id) for a, b in itertools.permutations(people, 2)]


def setup_customers(ctx: Context, count: int, label: str) -> list[customers.Customer]:
    t0 = time.monotonic()
    people = customers.create(ctx.base_url, ctx.args.admin_email, ctx.args.admin_password, count, label)
    say(f"{count} funded customers in {time.monotonic() - t0:.1f} s")
    return people


def accept_figures(ctx: Context, run: load.WrkResult) -> dict[str, Any]:
    duration_s = run.report.get("duration_us", 0) / 1e6 or run.wall_s
    statuses = run.status_counts
    return {
        "accepted": run.accepted,
        "accepted_per_s": round(run.accepted / duration_s, 1) if duration_s else None,
        "accept_latency_ms": run.latency_ms(),
        "status_counts": statuses,
        "non_202": sum(n for s, n in statuses.items() if s != "202"),
        "wrk_errors": run.report.get("errors"),
        "load_s": round(duration_s, 2),
        "loadgen_cpu_share": round(run.cpu_share(os.cpu_count() or 1), 4),
        "loadgen_cpu_s": round(run.cpu_s, 2),
    }


def settle_figures(
    ctx: Context, accounts: list[str], balance_before: int, accepted: int, since: float | None
) -> dict[str, Any]:
    """Settlement rate and the applied-once checks. ``since``: start of the settle window (default:
    the first transfer's created_at)."""
    assert ctx.sql is not None
    s = db.settlement(ctx.sql, accounts)
    start = since if since is not None else s["first_created"]
    window = (s["last_final"] - start) if s["last_final"] and start else None
    out: dict[str, Any] = {
        "transfers_in_db": s["count"],
        # wrk drops the requests still in flight when it stops; the server accepts them all the same.
        "accepted_after_wrk_stopped": s["count"] - accepted,
        "final_statuses": s["statuses"],
        "settle_window_s": round(window, 2) if window else None,
        "settled_per_s": round(s["count"] / window, 1) if window else None,
        "last_accept_to_last_final_s": round(s["last_final"] - s["last_created"], 2)
        if s["last_final"] and s["last_created"]
        else None,
    }
    if since is not None and s["first_final"] and s["last_final"] and s["last_final"] > s["first_final"]:
        # The drain without the workers' boot: first settlement to last final.
        out["settled_per_s_after_first_final"] = round(s["count"] / (s["last_final"] - s["first_final"]), 1)
    checks = db.applied_once(ctx.sql, accounts, balance_before)
    out["applied_once"] = checks.pop("ok")
    out["checks"] = checks
    return out


def with_ratios(ctx: Context, result: dict[str, Any], tps: float | None) -> dict[str, Any]:
    settled = result.get("settled_per_s")
    result["pgbench_tps"] = round(tps, 1) if tps else None
    result["settled_per_pgbench_tps"] = round(settled / tps, 4) if settled and tps else None
    return result


def load_mode(ctx: Context, mode: str) -> dict[str, Any]:
    """spread, hot, or batch (the spread pattern, ``--batch-size`` transfers per request)."""
    args = ctx.args
    count = args.hot_customers if mode == "hot" else args.spread_customers
    people = setup_customers(ctx, count, mode)
    accounts = [c.account_id for c in people]
    plan = load.write_plan(plan_rows(mode, people), OUT_DIR / "plans")
    before = db.balance_sum(ctx.sql, accounts) if ctx.sql else 0
    tps = run_pgbench(ctx)
    result: dict[str, Any] = {"mode": mode, "customers": count}
    script: dict[str, Any] = {}
    if mode == "batch":
        result.update(batch_size=args.batch_size, batch_atomic=args.batch_atomic)
        script = {"script": load.BATCH_LUA_SCRIPT, "script_args": (str(args.batch_size), str(int(args.batch_atomic)))}
    with system.RssSampler(ctx.sut) as sampler:  # a no-op with --no-start
        say(f"{mode}: wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s")
        busy0, total0 = system.cpu_times()
        api0 = api_cpu_s(ctx)
        run = load.run_wrk(ctx.wrk, ctx.base_url, plan, connections=args.connections, threads=args.threads,
                           duration_s=args.duration, log_dir=ctx.log_dir, **script)  # fmt: skip
        api1 = api_cpu_s(ctx)
        busy1, total1 = system.cpu_times()
        result.update(accept_figures(ctx, run))
        result.update(api_cpu_figures(api0, api1, run.accepted, run.wall_s))
        if mode == "batch":  # requests answer 200 (items 202): count requests, not transfers, here
            duration_s = run.report.get("duration_us", 0) / 1e6 or run.wall_s
            result["batch_requests"] = run.report.get("requests")
            result["batch_requests_per_s"] = round(run.report.get("requests", 0) / duration_s, 1)
            result["non_202"] = sum(n for s, n in run.status_counts.items() if s != "200")
        result["machine_cpu_busy_during_load"] = round((busy1 - busy0) / (total1 - total0), 3)
        say(f"  accepted {run.accepted} ({result['accepted_per_s']}/s), statuses {run.status_counts}")
        if ctx.sql:
            deadline = args.final_deadline or 120 + run.accepted / 20
            result["all_final"], _ = wait_final(ctx, accounts, deadline)
            result["final_deadline_s"] = round(deadline)
            result.update(settle_figures(ctx, accounts, before, run.accepted, since=None))
    result["worker_rss_mb"] = sampler.summary()
    plan.unlink(missing_ok=True)
    return with_ratios(ctx, result, tps)


def api_cpu_s(ctx: Context) -> float | None:
    """CPU seconds so far of the API's process group (None when the bench did not start it)."""
    web = ctx.sut.procs.get("web") if ctx.sut else None
    return system.cpu_seconds_of_groups({web.popen.pid}) if web else None


def api_cpu_figures(before: float | None, after: float | None, accepted: int, wall_s: float) -> dict[str, Any]:
    """What one accepted transfer cost the API processes (steadier than the rate on a shared machine)."""
    if before is None or after is None:
        return {}
    return {
        "api_cpu_ms_per_accept": round(1000 * (after - before) / accepted, 3) if accepted else None,
        "api_cpu_cores": round((after - before) / wall_s, 2) if wall_s else None,
    }


def openloop_mode(ctx: Context) -> dict[str, Any]:
    """The spread pattern offered at a fixed rate (bench/openloop.py): latency at a given load,
    not the queue a closed loop builds."""
    args = ctx.args
    people = setup_customers(ctx, args.spread_customers, "openloop")
    accounts = [c.account_id for c in people]
    plan = load.write_plan(plan_rows("spread", people), OUT_DIR / "plans")
    before = db.balance_sum(ctx.sql, accounts) if ctx.sql else 0
    result: dict[str, Any] = {"mode": "openloop", "customers": len(people)}
    max_rate = ctx.results.get("spread", {}).get("accepted_per_s")
    if args.openloop_rate:
        rate = args.openloop_rate
    else:
        if not max_rate:
            say(f"openloop: the closed loop's rate first (wrk -c{args.connections}, {args.duration:.0f} s)")
            probe = load.run_wrk(ctx.wrk, ctx.base_url, plan, connections=args.connections, threads=args.threads,
                                 duration_s=args.duration, log_dir=ctx.log_dir)  # fmt: skip
            max_rate = round(probe.accepted / (probe.report.get("duration_us", 0) / 1e6 or probe.wall_s), 1)
        rate = round(max_rate * args.openloop_share, 1)
        result["closed_loop_accepted_per_s"] = max_rate
    say(f"openloop: {rate}/s for {args.openloop_duration:.0f} s")
    busy0, total0 = system.cpu_times()
    api0 = api_cpu_s(ctx)
    out = subprocess.run(
        [sys.executable, "-m", "bench.openloop", ctx.base_url, str(plan), "--rate", str(rate),
         "--duration", str(args.openloop_duration)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    api1 = api_cpu_s(ctx)
    busy1, total1 = system.cpu_times()
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("OPENLOOP_JSON "))
    gen = json.loads(line.removeprefix("OPENLOOP_JSON "))
    accepted = gen["status"].get("202", 0)
    result.update(
        rate_offered=rate,
        share_of_closed_loop=args.openloop_share if not args.openloop_rate else None,
        duration_s=args.openloop_duration,
        sent=gen["sent"],
        accepted=accepted,
        status_counts=gen["status"],
        accept_latency_ms=gen["latency_ms"],
        late_ms=gen["late_ms"],
        connections_opened=gen["connections_opened"],
        loadgen_cpu_s=gen["cpu_s"],
        loadgen_cpu_share=round(gen["cpu_s"] / gen["wall_s"] / (os.cpu_count() or 1), 4),
        machine_cpu_busy_during_load=round((busy1 - busy0) / (total1 - total0), 3),
        **api_cpu_figures(api0, api1, accepted, gen["wall_s"]),
    )
    say(f"  accepted {accepted} of {gen['sent']}, latency {gen['latency_ms']}")
    if ctx.sql:
        deadline = args.final_deadline or 120 + accepted / 20
        result["all_final"], _ = wait_final(ctx, accounts, deadline)
        result.update(settle_figures(ctx, accounts, before, accepted, since=None))
    plan.unlink(missing_ok=True)
    return result


def loglevels_mode(ctx: Context) -> dict[str, Any]:
    """The closed loop (spread pattern, accept side only) with the API restarted at each LOG_LEVEL
    of ``--loglevels`` in turn, so the price of a log line per request is measured alternately."""
    args, sut = ctx.args, ctx.sut
    assert sut is not None
    people = setup_customers(ctx, args.spread_customers, "loglevels")
    plan = load.write_plan(plan_rows("spread", people), OUT_DIR / "plans")
    runs = []
    try:
        for level in [x.strip().upper() for x in args.loglevels.split(",") if x.strip()]:
            restart_web(sut, {"LOG_LEVEL": level})
            say(f"loglevels: LOG_LEVEL={level}: wrk -c{args.connections} {args.duration:.0f} s")
            api0 = api_cpu_s(ctx)
            run = load.run_wrk(ctx.wrk, ctx.base_url, plan, connections=args.connections, threads=args.threads,
                               duration_s=args.duration, log_dir=ctx.log_dir)  # fmt: skip
            api1 = api_cpu_s(ctx)
            figures = accept_figures(ctx, run)
            runs.append({"log_level": level, "accepted_per_s": figures["accepted_per_s"],
                         "accept_latency_ms": figures["accept_latency_ms"], "non_202": figures["non_202"],
                         **api_cpu_figures(api0, api1, run.accepted, run.wall_s)})  # fmt: skip
            say(f"  {runs[-1]}")
    finally:
        restart_web(sut, {"LOG_LEVEL": args.log_level})
        plan.unlink(missing_ok=True)
    result: dict[str, Any] = {"mode": "loglevels", "customers": len(people), "runs": runs}
    by_level: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_level.setdefault(r["log_level"], []).append(r)
    result["mean_by_level"] = {
        level: {k: round(sum(r[k] or 0 for r in rs) / len(rs), 3) for k in ("accepted_per_s", "api_cpu_ms_per_accept")}
        for level, rs in by_level.items()
    }
    return result


def restart_web(sut: system.System, env: dict[str, str]) -> None:
    sut.stop(["web"])
    sut.env.update(env)
    sut.start(["web"])
    processes.wait_http(f"{sut.url}/healthz", sut.procs["web"])


def drain_mode(ctx: Context) -> dict[str, Any]:
    args, sut = ctx.args, ctx.sut
    assert sut is not None and ctx.sql is not None
    n = args.drain_transfers
    people = setup_customers(ctx, args.spread_customers, "drain")
    accounts = [c.account_id for c in people]
    plan = load.write_plan(plan_rows("spread", people), OUT_DIR / "plans")
    before = db.balance_sum(ctx.sql, accounts)
    say(f"drain: stopping settlement workers {sut.worker_names}")
    sut.stop(sut.worker_names)
    result: dict[str, Any] = {"mode": "drain", "customers": args.spread_customers, "drain_transfers": n}
    say(f"drain: accepting {n} transfers with the workers stopped")
    run = load.run_wrk(ctx.wrk, ctx.base_url, plan, connections=args.connections, threads=args.threads,
                       duration_s=max(120, n / 2), quota=n, log_dir=ctx.log_dir)  # fmt: skip
    result.update(accept_figures(ctx, run))
    say(f"  accepted {run.accepted} ({result['accepted_per_s']}/s), statuses {run.status_counts}")
    result["pending_before_worker_start"] = db.unfinished(ctx.sql, accounts)
    tps = run_pgbench(ctx)
    result["queue_depth_at_worker_start"] = queue_depth(ctx)
    deadline = args.final_deadline or 120 + run.accepted / 20
    with system.RssSampler(sut) as sampler:
        say(f"drain: starting settlement workers; deadline {deadline:.0f} s")
        started = sut.start(sut.worker_names)
        result["all_final"], _ = wait_final(ctx, accounts, deadline)
    result["final_deadline_s"] = round(deadline)
    result.update(settle_figures(ctx, accounts, before, run.accepted, since=started))
    result["settle_window_from"] = "worker start"
    result["worker_rss_mb"] = sampler.summary()
    plan.unlink(missing_ok=True)
    return with_ratios(ctx, result, tps)


def queue_depth(ctx: Context) -> int | None:
    broker = ctx.args.broker_url or ctx.args.redis_url
    if not broker.startswith("redis"):
        return None
    # Every settlement queue: "transfers" (sweeper, gauges) and the partitions "transfers.N".
    client = redis.Redis.from_url(broker)
    queues = [q.decode() for q in client.scan_iter(match="transfers*", _type="list")]
    return sum(int(client.llen(q)) for q in queues)  # type: ignore[misc]


def machine(sql_server: str) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pg_version = db.server_version(sql_server)
    except Exception as exc:  # the figures stand without it
        pg_version = f"unknown ({type(exc).__name__})"
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "postgres": pg_version}


def git_commit() -> str:
    git = shutil.which("git")
    if not git:
        return "unknown"
    head = subprocess.run([git, "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()  # fmt: skip
    return head + ("-dirty" if dirty else "")


def emit(ctx: Context, result: dict[str, Any]) -> None:
    line = json.dumps({**result, **ctx.meta}, sort_keys=False)
    print(line, flush=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with (OUT_DIR / "results.jsonl").open("a") as out:
        out.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = load.find_wrk()
    if not wrk:
        say(load.WRK_MISSING)
        return 2
    pgb = pgbench.find_pgbench()
    if not pgb:
        say("pgbench not found (apt-get install -y postgresql-client): ratios to pgbench will be null")
    log_dir = OUT_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sut: system.System | None = None
    try:
        if args.no_start:
            has_db = bool(db.make_url(args.database_url).database)
            sql = db.url(args.database_url, db.make_url(args.database_url).database or "") if has_db else None
            base_url = args.url
        else:
            sut = start_system(args, log_dir)
            sql, base_url = db.url(args.database_url, BANK_DATABASE), sut.url
        meta = {
            "ts": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "machine": machine(sql or db.url(args.database_url, "postgres")),
            "system": {
                "started_by_bench": sut is not None,
                "log_level": args.log_level if sut else "unknown",
                "web_server": args.web_server if sut else "unknown",
                "procfile_entries": list(sut.entries) if sut else None,
                "settlement_workers": sut.worker_names if sut else None,
            },
            "duration_s": args.duration,
            "connections": args.connections,
            "loadgen": f"wrk -t{args.threads} -c{args.connections} (bench/transfers.lua)",
        }
        ctx = Context(args, wrk, pgb, base_url, sql, sut, meta, log_dir)
        if sql is None:
            say("no system database given (--database-url with a database name): settlement figures skipped")
        probe_s = customers.settle_probe(base_url, args.admin_email, args.admin_password)
        say(f"readiness probe: one transfer settled end to end in {probe_s:.1f} s")
        for mode in args.modes:
            say(f"=== {mode} ===")
            if mode == "drain":
                if sut is None or sql is None:
                    say("drain skipped: it stops and starts the workers, so it needs a system started by the bench")
                    continue
                result = drain_mode(ctx)
            elif mode == "openloop":
                result = openloop_mode(ctx)
            elif mode == "loglevels":
                if sut is None:
                    say("loglevels skipped: it restarts the API, so it needs a system started by the bench")
                    continue
                result = loglevels_mode(ctx)
            else:
                result = load_mode(ctx, mode)
            if mode == "hot" and ctx.results.get("spread", {}).get("settled_per_s") and result.get("settled_per_s"):
                result["hot_vs_spread_settled"] = round(
                    result["settled_per_s"] / ctx.results["spread"]["settled_per_s"], 3
                )
            result["exited_processes"] = list(ctx.exited)
            ctx.results[mode] = result
            emit(ctx, result)
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if sut is not None:
            say("stopping the system")
            sut.stop_all()
