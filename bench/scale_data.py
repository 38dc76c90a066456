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
Not written: outbox events (``webhook_events``: a delivery queue, not the books), the
registration and KYC audit rows, the customers' PINs.

The first ``heavy`` accounts each take ``heavy_share`` of the transfers (half sent, half
received); the others are drawn uniformly. Transfers are one every ``step_seconds`` (10 million a
month by default) up to the moment of the build, so "the last hour" holds as many at any size.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from core.transfers.routing import partition_of

MONTH_OF_10M = 30 * 24 * 3600 / 10_000_000  # seconds between transfers at 10 million a month
SETTLE_DELAY = "interval '20 milliseconds'"  # accept -> settlement: completed_at, the entries' created_at
STAGING = ("scale_accounts", "scale_plan", "scale_moves", "scale_entries")


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


def customer_email(n: int) -> str:
    return f"scale-{n}@bench.local"


BULK_TABLES = ("users", "accounts", "transfers", "ledger_entries", "audit_log")
# Indexes that no constraint owns (primary keys and unique constraints stay).
_SECONDARY_INDEXES = """
SELECT CAST(i.indexrelid AS regclass)::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
 WHERE i.indrelid = ANY(CAST(%s AS regclass[]))
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""

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
# Deposits first (ord 1..), then the transfers (ord accounts + i), each with its time.
_MOVES = """
CREATE UNLOGGED TABLE scale_moves AS
SELECT row_number() OVER (ORDER BY f.n) AS ord, gen_random_uuid() AS id, 'DEPOSIT' AS kind,
       %(admin)s::uuid AS initiated_by, 'scale-deposit-' || f.n AS idempotency_key,
       %(settlement)s::uuid AS source_id, a.account_id AS destination_id, f.amount, 0 AS partition,
       %(t0)s::timestamptz - interval '1 hour' + row_number() OVER (ORDER BY f.n) * interval '1 millisecond'
           AS created_at
  FROM (SELECT src_n AS n, sum(amount) AS amount FROM scale_plan GROUP BY src_n) f
  JOIN scale_accounts a USING (n)
UNION ALL
SELECT %(accounts)s + p.i, gen_random_uuid(), 'TRANSFER', s.user_id, 'scale-' || p.i, s.account_id, d.account_id,
       p.amount, s.partition, %(t0)s::timestamptz + p.i * %(step)s * interval '1 second'
  FROM scale_plan p JOIN scale_accounts s ON s.n = p.src_n JOIN scale_accounts d ON d.n = p.dst_n
"""
# Both entries of every move, each account's running balance in the order they are applied.
_ENTRIES = """
CREATE UNLOGGED TABLE scale_entries AS
SELECT e.*, sum(amount) OVER (PARTITION BY account_id ORDER BY ord, side ROWS UNBOUNDED PRECEDING) AS balance_after
  FROM (SELECT ord, 1 AS side, id AS transfer_id, source_id AS account_id, -amount AS amount, created_at
          FROM scale_moves
        UNION ALL
        SELECT ord, 2, id, destination_id, amount, created_at FROM scale_moves) e
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
  FROM scale_accounts a
  LEFT JOIN (SELECT account_id, sum(amount) AS balance FROM scale_entries GROUP BY account_id) b USING (account_id)
 ORDER BY a.n
"""
_SETTLEMENT_BALANCE = """
UPDATE accounts SET balance = balance + (SELECT coalesce(sum(amount), 0) FROM scale_entries WHERE account_id = id)
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
# seq is the identity column: drawn in this ORDER BY, the order the entries were applied.
_LEDGER = f"""
INSERT INTO ledger_entries (id, transfer_id, account_id, amount, balance_after, created_at)
SELECT gen_random_uuid(), transfer_id, account_id, amount, balance_after, created_at + {SETTLE_DELAY}
  FROM scale_entries ORDER BY ord, side
"""  # noqa: S608 -- formats in only the constant SETTLE_DELAY
# core/accounts/usage.py: a TRANSFER's debit counts in its UTC day and month.
_USAGE = """
INSERT INTO account_usage (account_id, period, starts_on, used)
SELECT source_id, p.period, p.starts_on, sum(amount)
  FROM scale_moves
 CROSS JOIN LATERAL (VALUES ('DAY', CAST(created_at AT TIME ZONE 'UTC' AS date)),
                            ('MONTH', CAST(date_trunc('month', created_at AT TIME ZONE 'UTC') AS date)))
       AS p(period, starts_on)
 WHERE kind = 'TRANSFER'
 GROUP BY 1, 2, 3
"""
# What deposit() and settlement write (actor, action, details), in the order they happened.
_AUDIT = f"""
INSERT INTO audit_log (occurred_at, actor_id, action, entity_type, entity_id, details)
SELECT occurred_at, actor_id, action, 'transfer', CAST(id AS text), details
  FROM (SELECT ord, 1 AS k, created_at AS occurred_at, initiated_by AS actor_id, id,
               CASE kind WHEN 'DEPOSIT' THEN 'deposit.completed' ELSE 'transfer.requested' END AS action,
               CASE kind WHEN 'DEPOSIT'
                    THEN jsonb_build_object('account_id', destination_id, 'amount', amount, 'currency', 'USD')
                    ELSE jsonb_build_object('amount', amount, 'currency', 'USD') END AS details
          FROM scale_moves
        UNION ALL
        SELECT ord, 2, created_at + {SETTLE_DELAY}, NULL, id, 'transfer.completed', jsonb_build_object('amount', amount)
          FROM scale_moves WHERE kind = 'TRANSFER') rows
 ORDER BY ord, k
"""  # noqa: S608 -- formats in only the constant SETTLE_DELAY


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
    say: Callable[[str], None] = lambda _: None,
) -> Book:
    """Write the book into the (migrated, otherwise empty of customers) database ``conninfo``."""
    if accounts < heavy + 2:
        raise ValueError("accounts must exceed the heavy ones by at least 2")
    if heavy * heavy_share >= 1:
        raise ValueError("the heavy accounts cannot take all the traffic")
    t0 = datetime.now(UTC) - timedelta(seconds=transfers * step_seconds)
    params = {
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
    }
    numbered = [(n, uuid.uuid4(), uuid.uuid4()) for n in range(1, accounts + 1)]
    seconds: dict[str, float] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")  # a benchmark's own data: nothing to lose
        for table in STAGING:
            conn.execute(f"DROP TABLE IF EXISTS {table}")

        def step(name: str, sql: str) -> None:
            started = time.monotonic()
            conn.execute(sql, params)
            seconds[name] = round(time.monotonic() - started, 1)
            say(f"{name}: {seconds[name]} s")

        started = time.monotonic()
        conn.execute(
            "CREATE UNLOGGED TABLE scale_accounts (n int PRIMARY KEY, account_id uuid NOT NULL,"
            " user_id uuid NOT NULL, partition smallint NOT NULL)"
        )
        with conn.cursor().copy("COPY scale_accounts (n, account_id, user_id, partition) FROM STDIN") as copy:
            for n, account_id, user_id in numbered:
                copy.write_row((n, account_id, user_id, partition_of(account_id, partitions)))
        seconds["accounts numbered"] = round(time.monotonic() - started, 1)
        step("plan", _PLAN)
        step("moves", _MOVES)
        step("entries", _ENTRIES)
        # The bulk load's usual recipe: secondary indexes built once after the rows (the same
        # definitions, so the same indexes; a unique one checks its rows when rebuilt), and no
        # foreign-key trigger per row (the rows refer only to rows written just before them).
        indexes = conn.execute(_SECONDARY_INDEXES, (list(BULK_TABLES),)).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("SET session_replication_role = replica")
        step("users", _USERS)
        step("accounts", _ACCOUNTS)
        step("settlement balance", _SETTLEMENT_BALANCE)
        step("transfers", _TRANSFERS)
        step("ledger_entries", _LEDGER)
        step("account_usage", _USAGE)
        if audit:
            step("audit_log", _AUDIT)
        conn.execute("RESET session_replication_role")
        started = time.monotonic()
        for _, definition in indexes:
            conn.execute(definition)
        seconds["indexes"] = round(time.monotonic() - started, 1)
        say(f"{len(indexes)} secondary indexes: {seconds['indexes']} s")
        times = conn.execute("SELECT min(created_at), max(created_at) FROM scale_moves WHERE kind = 'TRANSFER'")
        first, last = times.fetchone() or (t0, t0)
        # The typical customer: a light one who has sent (the sender of the newest light transfer).
        newest_light = conn.execute(
            "SELECT src_n FROM scale_plan WHERE src_n > %(heavy)s ORDER BY i DESC LIMIT 1", params
        ).fetchone()
        light_n = int(newest_light[0]) if newest_light else heavy + 1
        for table in STAGING:
            conn.execute(f"DROP TABLE {table}")
        step("analyze", "ANALYZE")
    return Book(
        transfers=transfers,
        accounts=accounts,
        heavy_accounts=[numbered[i][1] for i in range(heavy)],
        heavy_users=[numbered[i][2] for i in range(heavy)],
        light_account=numbered[light_n - 1][1],
        light_user=numbered[light_n - 1][2],
        light_email=customer_email(light_n),
        first_transfer_at=first,
        last_transfer_at=last,
        seconds=seconds,
    )


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
