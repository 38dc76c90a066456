"""A bank's book built by set-based SQL, row for row what the engine writes (``python -m bench.scale``).

``build`` writes, for ``accounts`` approved, active customers (one USD account each) and
``transfers`` transfers between them:
  - users, accounts (balances equal to their ledgers), the bank's USD settlement account;
  - one DEPOSIT per account that sends, from the settlement account, of exactly what it sends,
    an hour before the first transfer, so no balance is ever below zero;
  - every transfer COMPLETED: its row (partition by ``core.transfers.routing``), two ledger entries
    with ``balance_after`` and ``seq`` in the order they were applied, the account's day and month
    use (``account_usage``), and the audit rows the engine writes (``transfer.requested`` and
    ``transfer.completed``; ``deposit.completed``), left unsealed: the project's sealer seals them.
    They commit ``audit_chunk`` moves a transaction, as the engine's do a batch at a time, so the
    sealer (which cuts at transaction boundaries) seals them in its normal batches.
Not written: outbox events (``webhook_events``: a delivery queue, not the books), the
registration and KYC audit rows, the customers' PINs.

The first ``heavy`` accounts each take ``heavy_share`` of the transfers (half sent, half
received); the others are drawn uniformly. Transfers are one every ``step_seconds`` (10 million a
month by default) up to the moment of the build, so "the last hour" holds as many at any size.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core.transfers.routing import partition_of

MONTH_OF_10M = 30 * 24 * 3600 / 10_000_000  # seconds between transfers at 10 million a month
SETTLE_DELAY = "interval '20 milliseconds'"  # accept -> settlement: completed_at, the entries' created_at
STAGING = ("scale_accounts", "scale_plan", "scale_moves", "scale_balances")


@dataclass
class Book:
    transfers: int
    accounts: int
    heavy_accounts: list[uuid.UUID]
    heavy_users: list[uuid.UUID]
    light_account: uuid.UUID  # a typical customer's
    light_user: uuid.UUID
    light_email: str
    first_transfer_at: datetime
    last_transfer_at: datetime
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # the server process's, per step
    wal_bytes: int = 0  # written to the WAL by the whole server while it was built


def backend_cpu(conn: psycopg.Connection[Any]) -> Callable[[], float]:
    """The CPU seconds the connection's server process has used so far (user and system), or 0.0 if
    it is not a process of this machine's (a server given by URL): what a step cost the server
    whatever else shares the cores, where its wall time grows with the load average."""
    pid = conn.info.backend_pid
    data_directory = conn.execute("SHOW data_directory").fetchone()
    try:
        local = data_directory is not None and os.readlink(f"/proc/{pid}/cwd") == data_directory[0]
    except OSError:
        local = False
    tick = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/{pid}/stat")

    def used() -> float:
        if not local:
            return 0.0
        fields = stat.read_text().rsplit(")", 1)[1].split()  # utime and stime: fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / tick

    return used


def customer_email(n: int) -> str:
    return f"scale-{n}@bench.local"


BULK_TABLES = ("users", "accounts", "transfers", "ledger_entries", "audit_log")
# Tables whose keys (primary key, unique constraints) are built by sort after their rows, not by one
# random insert per row (22M uuids into ledger_entries' at 10M transfers); the foreign keys that
# reference them are set aside meanwhile and added back while the referencing tables are still empty.
KEYED_TABLES = ("users", "accounts", "account_usage", "transfers", "ledger_entries")
# Kept through the load: written in key order, and the sealer's scan (it seals during the load).
KEPT_INDEXES = frozenset({"ix_audit_log_txid_id"})
# Moves whose audit rows commit together (at most two rows a move): the sealer cuts its batches at
# transaction boundaries, so the book is sealed in its normal batches (SEAL_BATCH = 5,000 rows).
AUDIT_CHUNK = 2_500
# Indexes that no constraint owns (primary keys and unique constraints are the key step's).
_SECONDARY_INDEXES = """
SELECT CAST(i.indexrelid AS regclass)::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
 WHERE i.indrelid = ANY(CAST(%s AS regclass[]))
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""
_KEYS = """
SELECT CAST(conrelid AS regclass)::text, conname, contype, condeferrable, pg_get_indexdef(conindid)
  FROM pg_constraint WHERE conrelid = ANY(CAST(%s AS regclass[])) AND contype IN ('p', 'u')
"""
_REFERENCES = """
SELECT CAST(conrelid AS regclass)::text, conname, pg_get_constraintdef(oid), CAST(confrelid AS regclass)::text
  FROM pg_constraint WHERE contype = 'f' AND confrelid = ANY(CAST(%s AS regclass[]))
"""


def _uuid(seed: str) -> str:
    """SQL for a version 4 uuid from Postgres' random() and ``seed`` (unique per row, so two rows
    never draw the same id): the engine's ids are uuid4s, and gen_random_uuid() reads the kernel's
    random source on every call, 35 us here (13 minutes for the ledger's 22 million ids at 10M)."""
    return (
        f"CAST(overlay(overlay(md5(random()::text || ':' || {seed}) placing '4' from 13)"
        " placing substr('89ab', 1 + floor(random() * 4)::int, 1) from 17) AS uuid)"
    )


# The customers by number, their account's and user's ids, and the account's settlement partition:
# core.transfers.routing's uuid.int % partitions, the uuid's 128 bits as two 64-bit halves.
_ACCOUNTS_NUMBERED = f"""
CREATE UNLOGGED TABLE scale_accounts AS
SELECT n, account_id, user_id,
       CAST(mod((CAST(hi AS numeric) + CASE WHEN hi < 0 THEN 18446744073709551616 ELSE 0 END) * 18446744073709551616
                + CAST(lo AS numeric) + CASE WHEN lo < 0 THEN 18446744073709551616 ELSE 0 END,
                %(partitions)s) AS smallint) AS partition
  FROM (SELECT n, account_id, user_id,
               CAST(CAST('x' || substr(hex, 1, 16) AS bit(64)) AS bigint) AS hi,
               CAST(CAST('x' || substr(hex, 17, 16) AS bit(64)) AS bigint) AS lo
          FROM (SELECT n, account_id, user_id, replace(CAST(account_id AS text), '-', '') AS hex
                  FROM (SELECT n, {_uuid("'a' || n")} AS account_id, {_uuid("'u' || n")} AS user_id
                          FROM generate_series(1, %(accounts)s) n) drawn) written) halves
"""  # noqa: S608 -- formats in only _uuid's constant SQL
# Each transfer's accounts by number (1..heavy are the heavy ones): a heavy one with the chance
# heavy * share, the other side a uniform light one; otherwise two distinct light ones.
_PLAN = """
CREATE UNLOGGED TABLE scale_plan AS
SELECT i,
       CASE WHEN r < %(heavy_share)s THEN CASE WHEN s < 0.5 THEN h ELSE o END ELSE o END AS src_n,
       CASE WHEN r < %(heavy_share)s THEN CASE WHEN s < 0.5 THEN o ELSE h END ELSE p END AS dst_n,
       amount
  FROM (SELECT i, r, s, 1 + floor(r / %(share)s)::int AS h, %(heavy)s + 1 + x AS o,
               %(heavy)s + 1 + (x + 1 + y) %% %(light)s AS p, amount
          FROM (SELECT i, random() AS r, random() AS s, floor(random() * %(light)s)::int AS x,
                       floor(random() * (%(light)s - 1))::int AS y, 1 + floor(random() * 10000)::bigint AS amount
                  FROM generate_series(1, %(transfers)s) i) drawn) picked
"""
# Deposits first (ord 1..), then the transfers (ord accounts + i), each with its time; amounts bigint
# as the tables hold them (a sum() is numeric: the ledger's running sums would be numeric too).
_MOVES = f"""
CREATE UNLOGGED TABLE scale_moves AS
SELECT row_number() OVER (ORDER BY f.n) AS ord, {_uuid("'d' || f.n")} AS id, 'DEPOSIT' AS kind,
       %(admin)s::uuid AS initiated_by, 'scale-deposit-' || f.n AS idempotency_key,
       %(settlement)s::uuid AS source_id, a.account_id AS destination_id, f.amount, 0 AS partition,
       %(t0)s::timestamptz - interval '1 hour' + row_number() OVER (ORDER BY f.n) * interval '1 millisecond'
           AS created_at
  FROM (SELECT src_n AS n, CAST(sum(amount) AS bigint) AS amount FROM scale_plan GROUP BY src_n) f
  JOIN scale_accounts a USING (n)
UNION ALL
SELECT %(accounts)s + p.i, {_uuid("'t' || p.i")}, 'TRANSFER', s.user_id, 'scale-' || p.i, s.account_id, d.account_id,
       p.amount, s.partition, %(t0)s::timestamptz + p.i * %(step)s * interval '1 second'
  FROM scale_plan p JOIN scale_accounts s ON s.n = p.src_n JOIN scale_accounts d ON d.n = p.dst_n
"""  # noqa: S608 -- formats in only _uuid's constant SQL
# Each account's balance: what it received less what it sent.
_BALANCES = """
CREATE UNLOGGED TABLE scale_balances AS
SELECT account_id, sum(amount) AS balance
  FROM (SELECT source_id AS account_id, -amount AS amount FROM scale_moves
        UNION ALL
        SELECT destination_id, amount FROM scale_moves) e
 GROUP BY account_id
"""
_USERS = """
INSERT INTO users (id, email, password_hash, full_name, role, kyc_status, status, created_at, updated_at)
SELECT user_id, 'scale-' || n || '@bench.local', %(password_hash)s, 'Scale ' || n, 'customer', 'APPROVED', 'ACTIVE',
       %(t0)s::timestamptz - interval '2 hours' + n * interval '1 millisecond',
       %(t0)s::timestamptz - interval '2 hours' + n * interval '1 millisecond'
  FROM scale_accounts ORDER BY n
"""
_ACCOUNTS = """
INSERT INTO accounts (id, user_id, kind, currency, balance, held_amount, status, created_at, updated_at)
SELECT a.account_id, a.user_id, 'CUSTOMER', 'USD', coalesce(b.balance, 0), 0, 'ACTIVE',
       %(t0)s::timestamptz - interval '2 hours' + a.n * interval '1 millisecond', %(t0)s::timestamptz
  FROM scale_accounts a LEFT JOIN scale_balances b USING (account_id)
 ORDER BY a.n
"""
_SETTLEMENT_BALANCE = """
UPDATE accounts SET balance = balance + coalesce((SELECT balance FROM scale_balances WHERE account_id = id), 0)
 WHERE id = %(settlement)s
"""
_TRANSFERS = f"""
INSERT INTO transfers (id, kind, initiated_by, idempotency_key, request_hash, source_account_id, destination_account_id,
                       amount, currency, status, created_at, updated_at, completed_at, partition)
SELECT id, kind, initiated_by, idempotency_key, encode(sha256(convert_to(idempotency_key, 'UTF8')), 'hex'),
       source_id, destination_id, amount, 'USD', 'COMPLETED', created_at,
       created_at + {SETTLE_DELAY}, created_at + {SETTLE_DELAY}, partition
  FROM scale_moves ORDER BY ord
"""  # noqa: S608 -- formats in only the constant SETTLE_DELAY
# Both entries of every move, each account's running balance in the order they are applied, written
# in that order: seq is the identity column, drawn in this ORDER BY.
_LEDGER = f"""
INSERT INTO ledger_entries (id, transfer_id, account_id, amount, balance_after, created_at)
SELECT {_uuid("ord || '.' || side")}, transfer_id, account_id, amount,
       sum(amount) OVER (PARTITION BY account_id ORDER BY ord, side ROWS UNBOUNDED PRECEDING),
       created_at + {SETTLE_DELAY}
  FROM (SELECT ord, 1 AS side, id AS transfer_id, source_id AS account_id, -amount AS amount, created_at
          FROM scale_moves
        UNION ALL
        SELECT ord, 2, id, destination_id, amount, created_at FROM scale_moves) e
 ORDER BY ord, side
"""  # noqa: S608 -- formats in only the constant SETTLE_DELAY
# core/accounts/usage.py: a TRANSFER's debit counts in its UTC day and month. The days are summed
# from the moves (one row a transfer), the months from the days (one row an account and day): two
# aggregates of N and fewer rows, where each move counted twice made one of 2N.
_USAGE = """
INSERT INTO account_usage (account_id, period, starts_on, used)
WITH days AS MATERIALIZED (
    SELECT source_id, CAST(created_at AT TIME ZONE 'UTC' AS date) AS starts_on, sum(amount) AS used
      FROM scale_moves WHERE kind = 'TRANSFER' GROUP BY 1, 2)
SELECT source_id, 'DAY', starts_on, used FROM days
UNION ALL
SELECT source_id, 'MONTH', CAST(date_trunc('month', CAST(starts_on AS timestamp)) AS date), sum(used)
  FROM days GROUP BY 1, 3
"""
# What deposit() and settlement write (actor, action, details), in the order they happened: the
# moves lo < ord <= hi, in a transaction of their own (txid is the inserting transaction's).
_AUDIT = f"""
INSERT INTO audit_log (occurred_at, actor_id, action, entity_type, entity_id, details)
SELECT occurred_at, actor_id, action, 'transfer', CAST(id AS text), details
  FROM (SELECT ord, 1 AS k, created_at AS occurred_at, initiated_by AS actor_id, id,
               CASE kind WHEN 'DEPOSIT' THEN 'deposit.completed' ELSE 'transfer.requested' END AS action,
               CASE kind WHEN 'DEPOSIT'
                    THEN jsonb_build_object('account_id', destination_id, 'amount', amount, 'currency', 'USD')
                    ELSE jsonb_build_object('amount', amount, 'currency', 'USD') END AS details
          FROM scale_moves WHERE ord > %(lo)s AND ord <= %(hi)s
        UNION ALL
        SELECT ord, 2, created_at + {SETTLE_DELAY}, NULL, id, 'transfer.completed', jsonb_build_object('amount', amount)
          FROM scale_moves WHERE kind = 'TRANSFER' AND ord > %(lo)s AND ord <= %(hi)s) rows
 ORDER BY ord, k
"""  # noqa: S608 -- formats in only the constant SETTLE_DELAY


@dataclass
class _SetAside:
    """What the load drops and builds again afterwards, as read from the catalogue."""

    indexes: dict[str, list[str]]  # table -> CREATE INDEX of its secondary indexes
    keys: dict[str, list[tuple[str, str, str]]]  # table -> (constraint, PRIMARY KEY | UNIQUE, CREATE INDEX)
    references: dict[str, list[tuple[str, str, str]]]  # referenced table -> (table, constraint, definition)


def _set_aside(conn: psycopg.Connection[Any]) -> _SetAside:
    """Drop the bulk tables' secondary indexes (but KEPT_INDEXES), the keys of KEYED_TABLES and the
    foreign keys that reference those keys; return how to make each again, the same."""
    aside = _SetAside({t: [] for t in BULK_TABLES}, {t: [] for t in KEYED_TABLES}, {t: [] for t in KEYED_TABLES})
    for name, definition in conn.execute(_SECONDARY_INDEXES, (list(BULK_TABLES),)).fetchall():
        if name not in KEPT_INDEXES:
            aside.indexes[_table_of(definition)].append(definition)
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    keys = conn.execute(_KEYS, (list(KEYED_TABLES),)).fetchall()
    if any(deferrable for _, _, _, deferrable, _ in keys):
        raise RuntimeError("a deferrable key would come back immediate: the load does not handle it")
    for table, name, definition, referenced in conn.execute(_REFERENCES, (list(KEYED_TABLES),)).fetchall():
        aside.references[referenced].append((table, name, definition))
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(table), sql.Identifier(name)))
    for table, name, kind, _, index in keys:
        aside.keys[table].append((name, "PRIMARY KEY" if kind == "p" else "UNIQUE", index))
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(table), sql.Identifier(name)))
    return aside


def _table_of(index_definition: str) -> str:
    """``CREATE [UNIQUE] INDEX name ON public.table USING ...`` -> ``table``."""
    return index_definition.split(" ON ", 1)[1].split()[0].removeprefix("public.")


class _Indexer:
    """Index builds on connections of their own (``jobs`` at once), beside the load."""

    def __init__(self, conninfo: str, jobs: int, say: Callable[[str], None]) -> None:
        self._conninfo, self._say = conninfo, say
        self._pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="scale-index")
        self._local = threading.local()
        self._conns: list[psycopg.Connection[Any]] = []
        self.seconds = self.cpu_seconds = 0.0  # summed over the builds

    def submit(self, definitions: list[str]) -> list[Future[None]]:
        return [self._pool.submit(self._build, d) for d in definitions]

    def _build(self, definition: str) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = psycopg.connect(self._conninfo, autocommit=True)
            conn.execute("SET maintenance_work_mem = '1GB'")
            self._local.cpu = backend_cpu(conn)
            self._conns.append(conn)
        started, cpu = time.monotonic(), self._local.cpu()
        conn.execute(definition)
        took, cpu = time.monotonic() - started, self._local.cpu() - cpu
        self.seconds += took
        self.cpu_seconds += cpu
        self._say(f"  {definition.split(' ON ')[0].split()[-1]}: {took:.1f} s (cpu {cpu:.1f} s)")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)  # after a failure, no build left to wait for
        for conn in self._conns:
            conn.close()


def _restore_keys(conn: psycopg.Connection[Any], aside: _SetAside, table: str) -> float:
    """``table``'s keys from their indexes (built by sort, here: the load waits for them), then the
    foreign keys that reference it (checked against the rows there are: run it before the referencing
    tables are loaded, while that check reads nothing). Returns the seconds it took."""
    started = time.monotonic()
    for name, kind, index in aside.keys[table]:
        conn.execute(index)
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                sql.Identifier(table), sql.Identifier(name), sql.SQL(kind), sql.Identifier(name)
            )
        )
    for referencing, name, definition in aside.references[table]:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.SQL(referencing), sql.Identifier(name), sql.SQL(definition)
            )
        )
    return time.monotonic() - started


def build(
    conninfo: str,
    *,
    transfers: int,
    accounts: int,
    admin_id: uuid.UUID,
    settlement_id: uuid.UUID,
    password_hash: str,
    partitions: int,
    heavy: int = 3,
    heavy_share: float = 0.1,
    step_seconds: float = MONTH_OF_10M,
    audit: bool = True,
    audit_chunk: int = AUDIT_CHUNK,
    jobs: int = 2,
    audit_written: Callable[[], None] = lambda: None,
    say: Callable[[str], None] = lambda _: None,
) -> Book:
    """Write the book into the (migrated, otherwise empty of customers) database ``conninfo``.

    ``jobs`` index builds run beside the load; ``audit_written`` is called once every audit row has
    committed (the sealer may start then: the rest of the load writes no audit row)."""
    if accounts < heavy + 2:
        raise ValueError("accounts must exceed the heavy ones by at least 2")
    if heavy * heavy_share >= 1:
        raise ValueError("the heavy accounts cannot take all the traffic")
    t0 = datetime.now(UTC) - timedelta(seconds=transfers * step_seconds)
    params: dict[str, Any] = {
        "transfers": transfers,
        "accounts": accounts,
        "heavy": heavy,
        "light": accounts - heavy,
        "share": heavy_share,
        "heavy_share": heavy * heavy_share,
        "admin": admin_id,
        "settlement": settlement_id,
        "password_hash": password_hash,
        "t0": t0,
        "step": step_seconds,
        "partitions": partitions,
    }
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    indexer = _Indexer(conninfo, jobs, say)
    auditor = ThreadPoolExecutor(1, thread_name_prefix="scale-audit")
    stop = threading.Event()  # set if the load fails: the audit rows stop at their next chunk
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _bulk_session(conn)
        cpu = backend_cpu(conn)
        wal_from = conn.execute("SELECT pg_current_wal_lsn()").fetchone()

        def step(name: str, statement: str) -> None:
            started, used = time.monotonic(), cpu()
            conn.execute(statement, params)
            seconds[name], cpu_seconds[name] = round(time.monotonic() - started, 1), round(cpu() - used, 1)
            say(f"{name}: {seconds[name]} s (cpu {cpu_seconds[name]} s)")

        try:
            _stage(conn, partitions, step)
            # The bulk load's usual recipe: indexes and keys built once after the rows, by sort (the
            # same definitions, read back from the catalogue), and no foreign-key trigger per row (the
            # rows refer only to rows written before them; the test checks nothing dangles).
            aside = _set_aside(conn)
            conn.execute("SET session_replication_role = replica")
            # The audit rows on a connection of their own, beside the other tables (they refer to none).
            audit_rows = (
                auditor.submit(
                    _audit, conninfo, accounts + transfers, audit_chunk, audit_written, seconds, cpu_seconds, say, stop
                )
                if audit
                else None
            )
            waiting: list[Future[None]] = []
            audit_indexed = False

            def index_audit_when_written() -> None:
                nonlocal audit_indexed, waiting
                if audit_rows is not None and audit_rows.done() and not audit_indexed:
                    audit_rows.result()
                    waiting += indexer.submit(aside.indexes["audit_log"])
                    audit_indexed = True

            def load(table: str, *statements: tuple[str, str]) -> None:
                """The table's rows, then its keys; its secondary indexes then build beside the load."""
                nonlocal waiting
                with conn.transaction():
                    fresh = _truncate_if_empty(conn, table)
                    for name, statement in statements:
                        step(name, statement)
                if fresh:
                    say(f"  {table}: truncated in the same transaction (no WAL under wal_level = minimal)")
                used = cpu()
                seconds[f"{table} keys"] = round(_restore_keys(conn, aside, table), 1)
                cpu_seconds[f"{table} keys"] = round(cpu() - used, 1)
                say(
                    f"{table} keys and the foreign keys to them: {seconds[f'{table} keys']} s"
                    f" (cpu {cpu_seconds[f'{table} keys']} s)"
                )
                waiting += indexer.submit(aside.indexes.get(table, []))
                index_audit_when_written()

            load("users", ("users", _USERS))
            load("accounts", ("accounts", _ACCOUNTS), ("settlement balance", _SETTLEMENT_BALANCE))
            load("account_usage", ("account_usage", _USAGE))
            load("transfers", ("transfers", _TRANSFERS))
            load("ledger_entries", ("ledger_entries", _LEDGER))
            started = time.monotonic()
            if audit_rows is not None:
                audit_rows.result()
                seconds["waited for the audit rows"] = round(time.monotonic() - started, 1)
                index_audit_when_written()
            for future in waiting:
                future.result()
            seconds["indexes after the load"] = round(time.monotonic() - started, 1)
            seconds["index builds, summed"] = round(indexer.seconds, 1)
            cpu_seconds["index builds, summed"] = round(indexer.cpu_seconds, 1)
            say(f"audit rows and indexes still building after the load: {seconds['indexes after the load']} s")
        finally:
            stop.set()
            auditor.shutdown(wait=True, cancel_futures=True)
            indexer.close()
        conn.execute("RESET session_replication_role")
        times = conn.execute("SELECT min(created_at), max(created_at) FROM scale_moves WHERE kind = 'TRANSFER'")
        first, last = times.fetchone() or (t0, t0)
        # The typical customer: a light one who has sent (the sender of the newest light transfer).
        newest_light = conn.execute(
            "SELECT src_n FROM scale_plan WHERE src_n > %(heavy)s ORDER BY i DESC LIMIT 1", params
        ).fetchone()
        light_n = int(newest_light[0]) if newest_light else heavy + 1
        named = conn.execute(
            "SELECT n, account_id, user_id FROM scale_accounts WHERE n <= %s OR n = %s ORDER BY n", (heavy, light_n)
        ).fetchall()
        numbered = {n: (account_id, user_id) for n, account_id, user_id in named}
        for table in STAGING:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
        step("analyze", "ANALYZE")
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", wal_from).fetchone()
        wal_bytes = int(wal[0]) if wal is not None else 0
        say(f"WAL written while it was built: {wal_bytes / 1e6:,.0f} MB")
    return Book(
        transfers=transfers,
        accounts=accounts,
        heavy_accounts=[numbered[n][0] for n in range(1, heavy + 1)],
        heavy_users=[numbered[n][1] for n in range(1, heavy + 1)],
        light_account=numbered[light_n][0],
        light_user=numbered[light_n][1],
        light_email=customer_email(light_n),
        first_transfer_at=first,
        last_transfer_at=last,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        wal_bytes=wal_bytes,
    )


def _stage(conn: psycopg.Connection[Any], partitions: int, step: Callable[[str, str], None]) -> None:
    """The unlogged working tables: accounts by number, the plan, the moves, the balances."""
    for table in STAGING:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    step("accounts numbered", _ACCOUNTS_NUMBERED)
    step("accounts by number", "ALTER TABLE scale_accounts ADD PRIMARY KEY (n)")
    # The SQL above is core.transfers.routing's function: checked on a sample of its rows.
    for account_id, partition in conn.execute("SELECT account_id, partition FROM scale_accounts LIMIT 1000"):
        if partition != partition_of(account_id, partitions):
            raise AssertionError(f"account {account_id}: partition {partition}, routing says otherwise")
    step("plan", _PLAN)
    step("moves", _MOVES)
    step("moves by ord", "CREATE INDEX scale_moves_ord ON scale_moves (ord)")
    step("analyze moves", "ANALYZE scale_moves")
    step("balances", _BALANCES)


def _bulk_session(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET work_mem = '512MB'")
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET synchronous_commit = off")  # a benchmark's own data: nothing to lose


def _truncate_if_empty(conn: psycopg.Connection[Any], table: str) -> bool:
    """TRUNCATE ``table`` (inside the caller's transaction) if it holds no row, and say so: the rows
    inserted after it in the same transaction go to a new file, which under ``wal_level = minimal``
    is synced at commit instead of written to the WAL row by row. A table with rows (the admin in
    users, the bank's own accounts) is left as it is."""
    ident = sql.Identifier(table)
    if conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(ident)).fetchone() != (False,):
        return False
    conn.execute(sql.SQL("TRUNCATE {}").format(ident))
    return True


def _audit(
    conninfo: str,
    last_ord: int,
    chunk: int,
    written: Callable[[], None],
    seconds: dict[str, float],
    cpu_seconds: dict[str, float],
    say: Callable[[str], None],
    stop: threading.Event,
) -> None:
    """The audit rows on a connection of their own, then ``written()`` once the sealer can take them
    all: it seals below the xmin horizon, so not before every transaction older than the last audit
    row's has ended (a step of the load that began beside them would hold it back, and the sealer,
    finding nothing it may seal, would stop)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _bulk_session(conn)
        conn.execute("SET session_replication_role = replica")
        cpu = backend_cpu(conn)
        started, used = time.monotonic(), cpu()
        commits = _audit_rows(conn, last_ord, chunk, stop)
        if stop.is_set():
            return
        seconds["audit_log"], cpu_seconds["audit_log"] = round(time.monotonic() - started, 1), round(cpu() - used, 1)
        say(
            f"audit_log: {seconds['audit_log']} s (cpu {cpu_seconds['audit_log']} s;"
            f" {commits:,} transactions of <= {2 * chunk:,} rows)"
        )
        started = time.monotonic()
        last = conn.execute("SELECT max(txid) FROM audit_log").fetchone()
        while last is not None and last[0] is not None and not stop.is_set():
            horizon = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
            if horizon is not None and horizon[0] > last[0]:
                break
            time.sleep(0.5)
        seconds["sealer waited for older transactions"] = round(time.monotonic() - started, 1)
    written()


def _audit_rows(conn: psycopg.Connection[Any], last_ord: int, chunk: int, stop: threading.Event) -> int:
    """The audit rows, ``chunk`` moves a transaction (autocommit: one INSERT each); their count."""
    commits = 0
    for lo in range(0, last_ord, chunk):
        if stop.is_set():
            break
        if conn.execute(_AUDIT, {"lo": lo, "hi": lo + chunk}).rowcount:
            commits += 1
    return commits


def read_back(conninfo: str, *, heavy: int = 3) -> Book:
    """The ``Book`` of a database ``build`` wrote earlier (to time its reads again)."""
    with psycopg.connect(conninfo) as conn:
        emails = [customer_email(n) for n in range(1, heavy + 1)]
        owners = conn.execute(
            "SELECT a.id, u.id FROM users u JOIN accounts a ON a.user_id = u.id"
            " WHERE u.email = ANY(%s) ORDER BY array_position(%s, u.email)",
            (emails, emails),
        ).fetchall()
        heavy_accounts = [account for account, _ in owners]
        light = conn.execute(
            "SELECT a.id, a.user_id, u.email FROM transfers t JOIN accounts a ON a.id = t.source_account_id"
            " JOIN users u ON u.id = a.user_id WHERE t.kind = 'TRANSFER' AND t.source_account_id <> ALL(%s)"
            " ORDER BY t.created_at DESC, t.id DESC LIMIT 1",
            (heavy_accounts,),
        ).fetchone()
        first = conn.execute(
            "SELECT created_at FROM transfers WHERE kind = 'TRANSFER' ORDER BY created_at, id LIMIT 1"
        ).fetchone()
        last = conn.execute(
            "SELECT created_at FROM transfers WHERE kind = 'TRANSFER' ORDER BY created_at DESC, id DESC LIMIT 1"
        ).fetchone()
        counts = conn.execute(
            "SELECT (SELECT reltuples FROM pg_class WHERE relname = 'transfers'),"
            " (SELECT count(*) FROM accounts WHERE kind = 'CUSTOMER')"
        ).fetchone()
    assert light is not None and first is not None and last is not None and counts is not None
    return Book(
        transfers=int(counts[0]),
        accounts=int(counts[1]),
        heavy_accounts=heavy_accounts,
        heavy_users=[user for _, user in owners],
        light_account=light[0],
        light_user=light[1],
        light_email=light[2],
        first_transfer_at=first[0],
        last_transfer_at=last[0],
    )
