"""``python -m bench.scale --transfers N``: the API's reads on a book of N transfers.

Builds a fresh database ``bench_scale`` with ``bench.scale_data`` (set-based SQL, the engine's
rows) while the project's own sealer seals its audit rows in its normal batches, validates it with
the project's own ``reconcile``, waits for the sealer, times each read through the Flask app
in-process (median of ``--repeats`` calls after one warm-up), then runs the project's full
``verify-audit`` over the sealed chain, and prints a table; then, on the built book, the
incremental ``reconcile`` and ``verify-audit`` right after their full passes, the backlog
exporter's query, one run of each background task's core function (rolled back, so the book stays
as built) and a month's CSV statement of a heavy account streamed through the app, in a second
table. One JSON line is appended to .data/bench/results.jsonl. Progress on stderr.

Without ``--database-url`` it starts embedded Postgres and Redis in ``--data-dir`` (their own, so
a long build disturbs no other server).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, select

from bench import db
from bench.run import git_commit
from bench.scale_data import Book, build, customer_email, read_back
from core.accounts.service import settlement_account_id
from core.audit.seal import SEAL_BATCH, seal, unsealed
from core.audit.verify import ChainResult, default_workers, verify_chain
from core.audit.verify import record_checkpoint as record_verify_checkpoint
from core.config import Settings
from core.db import database_now, make_engine, make_session_factory
from core.identity import admin as admins
from core.identity.passwords import hash_password
from core.models import Transfer
from core.observability.backlog import measure as measure_backlog
from core.observability.money import measure_money
from core.reconcile import Report, reconcile
from core.reconcile import record_checkpoint as record_reconcile_checkpoint
from core.resources import webhook_policy
from core.transfers.holds import expire_due
from core.webhooks.relay import relay_events
from devtools import processes, services
from web import create_app

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / ".data" / "bench"
DATABASE = "bench_scale"
PASSWORD = "scale-bench-password"
ADMIN_EMAIL = "admin@bench.local"
GENEROUS = "1000000 per minute"
API = "/api/v1"


def say(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--transfers", type=int, required=True)
    p.add_argument("--accounts", type=int, default=1_000_000, help="customers, one account each")
    p.add_argument("--heavy", type=int, default=3, help="accounts that each take --heavy-share of the transfers")
    p.add_argument("--heavy-share", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per read (after one warm-up)")
    p.add_argument("--no-audit", action="store_true", help="write no audit rows")
    p.add_argument("--no-seal", action="store_true", help="leave the audit rows unsealed (and skip verify-audit)")
    p.add_argument("--no-verify", action="store_true", help="skip the full verify-audit (sealing still runs)")
    p.add_argument("--no-sizes", action="store_true", help="skip the bytes per table (a VACUUM of the whole book)")
    p.add_argument("--jobs", type=int, default=2, help="index builds at once beside the load")
    p.add_argument("--measure-only", action="store_true", help="time the reads of the book built by an earlier run")
    p.add_argument("--database-url", help="a Postgres server (default: embedded in --data-dir)")
    p.add_argument("--redis-url", help="with --database-url (default: embedded in --data-dir)")
    p.add_argument("--data-dir", type=lambda p: Path(p).resolve(), default=ROOT / ".data" / "bench-scale")
    return p.parse_args(argv)


def settings_for(database_url: str, redis_url: str) -> Settings:
    """The app's settings on the bench database: rate limits out of the way, and a statement
    timeout long enough for reconcile's whole-book queries."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        celery_broker_url=redis_url,
        app_env="development",
        log_level="WARNING",
        db_statement_timeout_ms=3_600_000,
        rate_limit_login_ip=GENEROUS,
        rate_limit_login_account=GENEROUS,
        rate_limit_statements=GENEROUS,
    )


def prepare(settings: Settings) -> tuple[Any, Any]:
    """The admin and the settlement account, through the engine's own services."""
    engine = make_engine(settings, pool_size=2)
    try:
        with make_session_factory(engine).begin() as session:
            admin = admins.create_admin(session, email=ADMIN_EMAIL, password=PASSWORD)
            return admin.id, settlement_account_id(session, "USD")
    finally:
        engine.dispose()


def validate(settings: Settings, *, incremental: bool = False) -> tuple[Report, float]:
    """The project's reconcile over the whole book (``incremental``: what changed since the last
    clean pass), in one snapshot, its checkpoint recorded in the same transaction: as
    ``flask reconcile [--incremental]``."""
    engine = make_engine(settings, pool_size=1)
    started = time.monotonic()
    try:
        with make_session_factory(engine).begin() as session:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            report = reconcile(session, incremental=incremental)
            record_reconcile_checkpoint(session, report)
    finally:
        engine.dispose()
    return report, time.monotonic() - started


# The bench's own embedded server only (in --data-dir), never a server given by --database-url:
# checkpoints far apart for a load that writes tens of GB, so a page is not written to the WAL whole
# again after every checkpoint (full-page writes); and wal_level = minimal (no replica, no archive:
# max_wal_senders = 0), so the rows a transaction inserts into a table it truncated, and every index
# build, skip the WAL and are synced to disk at commit instead (bench.scale_data loads transfers,
# ledger_entries and account_usage that way). Nothing of it is production's configuration.
LOAD_SETTINGS = {
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "archive_mode": "off",
}


def tune_for_load(stack: services.Services) -> None:
    """LOAD_SETTINGS on the embedded server, restarted for them (wal_level takes a restart)."""
    with psycopg.connect(db.url(stack.database_url, "postgres"), autocommit=True) as conn:
        for name, value in LOAD_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        current = {name: conn.execute(f"SHOW {name}").fetchone() for name in ("wal_level", "max_wal_senders")}
    if current != {"wal_level": ("minimal",), "max_wal_senders": ("0",)}:
        stack.restart_postgres()


class Sealer(threading.Thread):
    """The project's sealer (``core.audit.seal.seal``, a batch per transaction, as the worker's task
    runs it) sealing every audit row there is, beside the rest of the load."""

    def __init__(self, settings: Settings, limit: int = SEAL_BATCH) -> None:
        super().__init__(name="scale-sealer", daemon=True)
        self.settings, self.limit = settings, limit
        self.rows = self.batches = self.largest = 0
        self.seconds = 0.0
        self.unsealed_left = -1
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        engine = make_engine(self.settings, pool_size=1)
        sessions = make_session_factory(engine)
        try:
            while True:
                with sessions.begin() as session:
                    result = seal(session, limit=self.limit)
                if result.busy:
                    time.sleep(0.1)
                    continue
                if result.sealed == 0:
                    break
                self.rows += result.sealed
                self.batches += 1
                self.largest = max(self.largest, result.sealed)
                if self.batches % 500 == 0:
                    say(f"sealer: {self.rows:,} rows in {self.batches:,} batches, {time.monotonic() - started:.0f} s")
            with sessions() as session:
                self.unsealed_left = unsealed(session, datetime.now(UTC)).rows
        except BaseException as exc:  # re-raised by finish() in the main thread
            self.error = exc
        finally:
            engine.dispose()
            self.seconds = time.monotonic() - started

    def finish(self) -> dict[str, Any]:
        self.join()
        if self.error is not None:
            raise self.error
        return {
            "rows": self.rows,
            "batches": self.batches,
            "largest_batch": self.largest,
            "seconds": round(self.seconds, 1),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else 0,
            "unsealed_left": self.unsealed_left,
        }


def verify(settings: Settings, *, incremental: bool = False) -> tuple[ChainResult, float]:
    """The project's verify-audit over the sealed chain (``incremental``: the batches after the last
    intact pass), in one snapshot, with as many processes as the command uses by default, its
    checkpoint recorded in the same transaction: as ``flask verify-audit [--incremental]``."""
    engine = make_engine(settings, pool_size=1)
    started = time.monotonic()
    try:
        with make_session_factory(engine).begin() as session:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            result = verify_chain(session, incremental=incremental, workers=default_workers())
            record_verify_checkpoint(session, result, full_pass=not incremental)
    finally:
        engine.dispose()
    return result, time.monotonic() - started


def reads(book: Book, newest_of_heavy: str) -> list[tuple[str, str, str]]:
    """(what, who, path) for every read timed: who is 'heavy', 'light' or 'admin'."""
    heavy, light = book.heavy_accounts[0], book.light_account
    last = book.last_transfer_at
    window = f"from={_instant(last - timedelta(hours=1))}&to={_instant(last + timedelta(seconds=1))}"
    return [
        ("customer GET /transfers, first page", "light", f"{API}/transfers"),
        ("customer GET /transfers, first page (heavy account)", "heavy", f"{API}/transfers"),
        ("customer GET /transfers?account_id=", "light", f"{API}/transfers?account_id={light}"),
        ("customer GET /transfers?status= (no match)", "heavy", f"{API}/transfers?status=EXPIRED"),
        ("GET /transfers/{id}", "heavy", f"{API}/transfers/{newest_of_heavy}"),
        ("GET /accounts/{id}/entries (heavy account)", "heavy", f"{API}/accounts/{heavy}/entries"),
        ("statement of the last hour (heavy account)", "heavy", f"{API}/accounts/{heavy}/statement?{window}"),
        ("admin GET /admin/users, first page", "admin", f"{API}/admin/users"),
        ("admin GET /admin/users?kyc_status= (no match)", "admin", f"{API}/admin/users?kyc_status=REJECTED"),
        ("admin GET /transfers, first page", "admin", f"{API}/transfers"),
        ("admin GET /transfers?status= (no match)", "admin", f"{API}/transfers?status=EXPIRED"),
        ("admin GET /transfers?account_id= (heavy account)", "admin", f"{API}/transfers?account_id={heavy}"),
    ]


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def measure(settings: Settings, book: Book, repeats: int) -> list[dict[str, Any]]:
    """Each read's median time through the app in-process; every answer must be a 200."""
    app = create_app(settings)
    try:
        return _timed_reads(app, settings, book, repeats)
    finally:
        _close(app)


def _close(app: Any) -> None:
    """What ``create_app`` opened: the API's engine and Redis, and its Celery app's."""
    from worker.runtime import runtime

    app.extensions["bank"].close()
    runtime(app.extensions["celery"]).close()


def login(client: Any, email: str) -> dict[str, str]:
    """The headers of a caller logged in through the API."""
    r = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.get_data(as_text=True)
    return {"Authorization": f"Bearer {r.json['access_token']}"}


def _timed_reads(app: Any, settings: Settings, book: Book, repeats: int) -> list[dict[str, Any]]:
    client = app.test_client()
    callers = {
        "heavy": login(client, customer_email(1)),
        "light": login(client, book.light_email),
        "admin": login(client, ADMIN_EMAIL),
    }
    engine = make_engine(settings, pool_size=1)
    with make_session_factory(engine)() as session:
        heavy = book.heavy_accounts[0]
        newest = session.scalars(
            select(Transfer.id)
            .where(Transfer.source_account_id == heavy, Transfer.status == "COMPLETED")
            .order_by(Transfer.created_at.desc(), Transfer.id.desc())
            .limit(1)
        ).one()
    engine.dispose()
    rows = []
    for what, who, path in reads(book, str(newest)):
        call: Callable[[], Any] = lambda path=path, who=who: client.get(path, headers=callers[who])  # noqa: E731
        first = call()
        assert first.status_code == 200, (path, first.status_code, first.get_data(as_text=True)[:500])
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            r = call()
            times.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, (path, r.status_code)
        items = first.json.get("items", first.json.get("entries"))
        rows.append(
            {
                "read": what,
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "rows": len(items) if isinstance(items, list) else 1,
                "rows_read": rows_read(app.extensions["bank"].engine, call),
            }
        )
    return rows


def rows_read(engine: Any, call: Callable[[], Any]) -> int:
    """The table rows the queries of one ``call`` read, by EXPLAIN ANALYZE of each SELECT it ran
    (what each scan returned plus what its filters dropped): bounded for an index range."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    total = 0
    with engine.connect() as conn:
        for statement, parameters in seen:
            explained = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
            todo = [explained.scalar_one()[0]["Plan"]]
            while todo:
                node = todo.pop()
                todo += node.get("Plans", [])
                if "Relation Name" in node:
                    per_loop = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
                    total += round(per_loop * node["Actual Loops"])
        conn.rollback()
    return total


# The second table: the work beside the reads, on the built book (the sealer finished).


def backlog_query(settings: Settings, repeats: int) -> dict[str, Any]:
    """What the backlog exporter runs against Postgres every interval (worker/backlog_exporter.py's
    ``measure_once``: ``measure`` then ``measure_money``, one session): median of ``repeats`` after a warm-up."""
    engine = make_engine(settings, pool_size=1)
    sessions = make_session_factory(engine)
    times = []
    try:
        for _ in range(repeats + 1):
            with sessions() as session:
                started = time.perf_counter()
                measure_backlog(session, datetime.now(UTC), settings.sweeper_max_requeues)
                measure_money(session)
                times.append((time.perf_counter() - started) * 1000)
    finally:
        engine.dispose()
    times = times[1:]
    return {
        "work": "backlog exporter's query (measure + measure_money)",
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
    }


def tasks(settings: Settings) -> list[dict[str, Any]]:
    """One run of each background task's core function, as its worker task calls it for one batch
    (one transaction, the worker's batch size), timed to the end of its statements and then
    rolled back, so the book stays as built; "did" is what the run found to do. The audit rows the
    reads' logins wrote are sealed first (committed, as the worker's sealer would have), so the
    sealer's run has nothing to seal."""
    from worker.hold_expiry import EXPIRE_BATCH
    from worker.sweeper import claim_due
    from worker.webhooks import RELAY_BATCH

    queue_lease = webhook_policy(settings).queue_lease

    def sweep(session: Any) -> int:
        return len(claim_due(session, settings)[0])

    runs: list[tuple[str, Callable[[Any], int]]] = [
        ("sealer (seal, nothing to seal)", lambda s: seal(s, limit=SEAL_BATCH).sealed),
        (
            "outbox relay (relay_events)",
            lambda s: relay_events(s, now=database_now(s), queue_lease=queue_lease, limit=RELAY_BATCH).events,
        ),
        ("sweeper (claim_stale_pending)", sweep),
        ("hold expiry (expire_due)", lambda s: len(expire_due(s, limit=EXPIRE_BATCH))),
    ]
    engine = make_engine(settings, pool_size=1)
    sessions = make_session_factory(engine)
    rows = []
    try:
        while True:
            with sessions.begin() as session:
                if seal(session, limit=SEAL_BATCH).sealed == 0:
                    break
        for what, run in runs:
            with sessions() as session:
                started = time.perf_counter()
                did = run(session)
                elapsed = (time.perf_counter() - started) * 1000
                session.rollback()
            rows.append({"work": what, "ms": round(elapsed, 1), "did": did})
    finally:
        engine.dispose()
    return rows


def statement_period(book: Book) -> tuple[datetime, datetime]:
    """The month (30 days) before the last transfer, or the whole book's span if shorter."""
    end = book.last_transfer_at + timedelta(seconds=1)
    return max(book.first_transfer_at, end - timedelta(days=30)), end


def statement_csv(settings: Settings, book: Book) -> dict[str, Any]:
    """The heavy account's statement of :func:`statement_period` as CSV, streamed through the app:
    its seconds, rows and this process's peak RSS growth: its current RSS read after each chunk, the
    highest less the RSS before (``ru_maxrss``, the process's high-water mark, grows only past
    what the build and the sealer already took, so it is kept beside it)."""
    start, end = statement_period(book)
    statement = f"{API}/accounts/{book.heavy_accounts[0]}/statement"
    path = f"{statement}?from={_instant(start)}&to={_instant(end)}"
    app = create_app(settings)
    try:
        client = app.test_client()
        headers = {**login(client, customer_email(1)), "Accept": "text/csv"}
        tiny = f"{statement}?from={_instant(end - timedelta(seconds=1))}&to={_instant(end)}"
        warm = client.get(tiny, headers=headers)  # the statement's first call, on a period of a second
        assert warm.status_code == 200, (tiny, warm.status_code)
        maxrss_before, rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _rss()
        peak = rss_before
        started = time.perf_counter()
        r = client.get(path, headers=headers, buffered=False)
        assert r.status_code == 200, (path, r.status_code)
        lines = size = 0
        for chunk in r.response:
            data = chunk.encode() if isinstance(chunk, str) else chunk
            lines += data.count(b"\n")
            size += len(data)
            peak = max(peak, _rss())
        r.close()
        seconds = time.perf_counter() - started
        maxrss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
    finally:
        _close(app)
    return {
        "work": f"CSV statement of {(end - start).total_seconds() / 3600:,.1f} hours (heavy account)",
        "seconds": round(seconds, 2),
        "rows": lines - 1,  # less the header row
        "bytes": size,
        "peak_rss_growth_mb": round((peak - rss_before) / 1e6, 1),
        "maxrss_growth_mb": round(maxrss_growth / 1024, 1),
    }


def _rss() -> int:
    """This process's resident set now, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def attempt(work: dict[str, Any], key: str, measure: Callable[[], Any]) -> None:
    """``work[key] = measure()``, said on stderr; a failure is said and kept as the key's ``error``
    instead, so the rest is still measured and the JSON line written (and the run exits 1)."""
    say(f"{key} ...")
    try:
        work[key] = measure()
    except Exception as exc:
        say(f"{key}: FAILED {exc!r}")
        work[key] = {"error": repr(exc)[:1000]}
    else:
        say(f"{key}: {work[key]}")


def _checked(report: Report, seconds: float) -> dict[str, Any]:
    start = "full pass" if report.started_after_horizon is None else f"since txid {report.started_after_horizon}"
    return {
        "seconds": round(seconds, 2),
        "checked": report.transfers_checked,
        "accounts": report.accounts_checked,
        "problems": len(report.problems),
        "ok": report.ok,
        "notes": f"{start}: {report.transfers_checked:,} transfers, {report.accounts_checked:,} accounts,"
        f" {len(report.problems)} problem(s)",
    }


def _proved(chain: ChainResult, seconds: float) -> dict[str, Any]:
    start = "from seq 1" if chain.started_after_batch is None else f"after batch {chain.started_after_batch}"
    state = "intact" if chain.ok else f"BROKEN at seq {chain.broken_at_seq}"
    return {
        "seconds": round(seconds, 2),
        "checked": chain.rows_checked,
        "batches": chain.batches_checked,
        "ok": chain.ok,
        "notes": f"{state} {start}: {chain.rows_checked:,} rows in {chain.batches_checked:,} batches",
    }


def work_table(work: dict[str, Any]) -> str:
    lines = ["| work | time | rows / did | notes |", "|---|---|---|---|"]
    failed = {key: r["error"] for key, r in work.items() if isinstance(r, dict) and "error" in r}
    for name in ("reconcile", "verify_audit"):
        for kind in ("full", "incremental"):
            r = work.get(f"{name}_{kind}")
            if r is not None and "error" not in r:
                lines.append(
                    f"| {name.replace('_', '-')} ({kind}) | {r['seconds']} s | {r['checked']:,} | {r['notes']} |"
                )
    b = work["backlog"]
    if "backlog" not in failed:
        lines.append(f"| {b['work']} | {b['median_ms']} ms (max {b['max_ms']}) | | median |")
    if "tasks" not in failed:
        lines += [f"| {t['work']} | {t['ms']} ms | {t['did']} | one batch, rolled back |" for t in work["tasks"]]
    s = work["statement"]
    if "statement" not in failed:
        lines.append(
            f"| {s['work']} | {s['seconds']} s | {s['rows']:,} | {s['bytes'] / 1e6:,.1f} MB streamed;"
            f" peak RSS +{s['peak_rss_growth_mb']} MB (high-water mark +{s['maxrss_growth_mb']} MB) |"
        )
    lines += [f"| {key} | FAILED | | {error[:200]} |" for key, error in failed.items()]
    return "\n".join(lines)


# Tables that grow with the accounts (one user and one account per customer), not the transfers.
PER_ACCOUNT = frozenset({"users", "accounts", "account_usage"})
# The outbox: kept for the retention window (30 days), then dropped whole (core/events_partitions.py).
OUTBOX = frozenset({"webhook_events", "webhook_deliveries", "webhook_delivery_attempts"})
_SIZES = """
SELECT coalesce(p.relname, c.relname) AS name, sum(pg_relation_size(c.oid)) AS heap,
       sum(pg_indexes_size(c.oid)) AS indexes, sum(pg_total_relation_size(c.oid)) AS total
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
 WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT LIKE 'scale\\_%'
 GROUP BY 1 HAVING sum(pg_total_relation_size(c.oid)) > 0
 ORDER BY 4 DESC
"""


def sizes(conninfo: str, transfers: int) -> list[dict[str, Any]]:
    """Each table's bytes on disk (heap, its indexes, TOAST; partitions counted under their
    parent) and bytes per transfer, after a VACUUM ANALYZE so the free space map is current."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        found = conn.execute(_SIZES).fetchall()
    return [
        {
            "table": name,
            "kind": "account" if name in PER_ACCOUNT else "outbox" if name in OUTBOX else "transfer",
            "heap": int(heap),
            "indexes": int(indexes),
            "total": int(total),
            "per_transfer": round(int(total) / transfers) if transfers else 0,
        }
        for name, heap, indexes, total in found
    ]


def size_table(rows: list[dict[str, Any]], transfers: int) -> str:
    lines = ["| table | heap | indexes | total (with TOAST) | bytes per transfer |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['table']} | {r['heap'] / 1e6:,.1f} MB | {r['indexes'] / 1e6:,.1f} MB | {r['total'] / 1e6:,.1f} MB"
        f" | {r['per_transfer']:,}{'' if r['kind'] == 'transfer' else ' (' + r['kind'] + ')'} |"
        for r in rows
    ]
    kept = sum(r["total"] for r in rows if r["kind"] == "transfer")
    lines.append(
        f"| **per transfer, kept beyond the outbox window** | | | {kept / 1e6:,.1f} MB | {round(kept / transfers):,} |"
    )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| read | median | max | rows answered | table rows read |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['read']} | {r['median_ms']} ms | {r['max_ms']} ms | {r['rows']} | {r['rows_read']} |" for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stack = None
    if args.database_url:
        if not args.redis_url:
            raise SystemExit("--redis-url is needed with --database-url")
        server_url, redis_url = args.database_url, args.redis_url
    else:
        stack = services.start(args.data_dir)
        server_url, redis_url = stack.database_url, stack.redis_url
        if stack.postgres_embedded:
            tune_for_load(stack)
    if args.measure_only:
        database_url = db.url(server_url, DATABASE)
        processes.migrate({**os.environ, "DATABASE_URL": database_url}, ROOT)  # the code may be newer
        settings = settings_for(database_url, redis_url)
        book = read_back(database_url, heavy=args.heavy)
        report, reconcile_s, build_s = Report(), 0.0, 0.0  # reconciled when it was built
        say(f"timing the reads of the book in {DATABASE} ({book.transfers:,} transfers)")
        sealer = Sealer(settings)  # seals what an earlier run left unsealed, if anything
    else:
        database_url = db.recreate(server_url, DATABASE)
        say(f"fresh database {DATABASE}; migrating")
        processes.migrate({**os.environ, "DATABASE_URL": database_url}, ROOT)
        settings = settings_for(database_url, redis_url)
        admin_id, settlement_id = prepare(settings)
        say(f"building {args.transfers:,} transfers over {args.accounts:,} accounts")
        sealer = Sealer(settings)
        started = time.monotonic()
        book = build(
            database_url,
            transfers=args.transfers,
            accounts=args.accounts,
            admin_id=admin_id,
            settlement_id=settlement_id,
            password_hash=hash_password(PASSWORD),
            partitions=settings.settle_partitions,
            heavy=args.heavy,
            heavy_share=args.heavy_share,
            audit=not args.no_audit,
            jobs=args.jobs,
            audit_written=(lambda: None) if args.no_seal else sealer.start,
            say=say,
        )
        build_s = time.monotonic() - started
        say(f"built in {build_s:.0f} s; reconciling{' (the sealer still at work)' if sealer.is_alive() else ''}")
        report, reconcile_s = validate(settings)
        say(
            f"reconcile: {report.accounts_checked:,} accounts, {report.transfers_checked:,} transfers, "
            f"{len(report.problems)} problem(s) in {reconcile_s:.0f} s"
        )
        for problem in report.problems[:20]:
            say(f"MISMATCH {problem}")
    # The sealer finishes before the reads are timed: it is a thread of this process, and while it
    # hashes it holds the GIL the in-process API needs (a busy thread made a 3 ms read 57 ms).
    sealing: dict[str, Any] = {}
    if not args.no_seal:
        if sealer.ident is None:
            sealer.start()
        sealing = sealer.finish()
        say(
            f"sealed {sealing['rows']:,} audit rows in {sealing['batches']:,} batches"
            f" (largest {sealing['largest_batch']:,}) in {sealing['seconds']:.0f} s from the end of the audit load;"
            f" {sealing['unsealed_left']:,} left unsealed"
        )
    sealing_during_reads = sealer.is_alive()
    rows = measure(settings, book, args.repeats)
    print(f"{args.transfers:,} transfers, {args.accounts:,} accounts, {args.heavy} heavy at {args.heavy_share:.0%}")
    print(table(rows), flush=True)
    work: dict[str, Any] = {}
    if not args.measure_only:
        work["reconcile_full"] = _checked(report, reconcile_s)
    attempt(work, "reconcile_incremental", lambda: _checked(*validate(settings, incremental=True)))
    chain, verify_s = (None, 0.0) if args.no_verify or args.no_seal else verify(settings)
    if chain is not None:
        state = "intact" if chain.ok else f"BROKEN at seq {chain.broken_at_seq}: {chain.reason}"
        say(
            f"verify-audit (full): {state}; {chain.rows_checked:,} rows,"
            f" {chain.batches_checked:,} batches in {verify_s:.0f} s"
        )
        work["verify_audit_full"] = _proved(chain, verify_s)
        attempt(work, "verify_audit_incremental", lambda: _proved(*verify(settings, incremental=True)))
    attempt(work, "backlog", lambda: backlog_query(settings, args.repeats))
    attempt(work, "tasks", lambda: tasks(settings))
    attempt(work, "statement", lambda: statement_csv(settings, book))
    print()
    print(work_table(work), flush=True)
    stored = [] if args.no_sizes else sizes(database_url, book.transfers)
    if stored:
        print()
        print(size_table(stored, book.transfers))
    result = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "bench": "scale",
        "git_commit": git_commit(),
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "load_average": os.getloadavg(),
        "postgres": db.server_version(database_url),
        "transfers": args.transfers,
        "accounts": args.accounts,
        "transfers_in_db": report.transfers_checked or book.transfers,
        "measure_only": args.measure_only,
        "build_s": round(build_s),
        "build_steps_s": book.seconds,
        "build_steps_cpu_s": book.cpu_seconds,
        "build_wal_bytes": book.wal_bytes,
        "reconcile_ok": report.ok,
        "reconcile_s": round(reconcile_s, 1),
        "sealing": sealing,
        "sealer_running_during_reads": sealing_during_reads,
        "verify_ok": chain.ok if chain is not None else None,
        "verify_rows": chain.rows_checked if chain is not None else None,
        "verify_s": round(verify_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "reads": rows,
        "work": work,
        "sizes": stored,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with (OUT_DIR / "results.jsonl").open("a") as out:
        out.write(json.dumps(result) + "\n")
    if stack is not None:
        stack.stop()
    intact = chain is None or chain.ok
    worked = all(isinstance(w, list) or (w.get("ok", True) and "error" not in w) for w in work.values())
    return 0 if report.ok and sealing.get("unsealed_left", 0) == 0 and intact and worked else 1


if __name__ == "__main__":
    raise SystemExit(main())
