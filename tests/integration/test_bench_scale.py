"""bench.scale's generator writes a book the project's own reconcile finds exact, with the
entries chained as the engine chains them, its indexes and constraints back as the migrations made
them, its audit rows sealed by the project's sealer in bounded batches and verified, and every read
the benchmark times answers."""

from __future__ import annotations

import psycopg
import pytest

from bench import db, scale
from bench.scale_data import build
from core.identity.passwords import hash_password
from core.transfers.routing import partition_of
from tests.integration import scratch

pytestmark = pytest.mark.commits  # a database of its own, a copy of the freshly migrated one

SCRATCH_DB = "bench_scale_test"
TRANSFERS, ACCOUNTS = 2_000, 120
AUDIT_CHUNK, SEAL_LIMIT = 300, 1_000  # small, so the book's ~4,100 audit rows take several of each

# Per account, along seq: each entry's balance_after is the previous one's plus its amount (the
# first from zero), and created_at never goes back.
_BROKEN_CHAINS = """
SELECT count(*) FROM (
    SELECT balance_after - amount AS before, lag(balance_after) OVER w AS previous,
           created_at, lag(created_at) OVER w AS previous_at
      FROM ledger_entries WINDOW w AS (PARTITION BY account_id ORDER BY seq)) e
 WHERE before <> coalesce(previous, 0) OR created_at < previous_at
"""

# The foreign keys the load did not check row by row (session_replication_role = replica).
_DANGLING = """
SELECT (SELECT count(*) FROM transfers t
         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.source_account_id)
            OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.destination_account_id)
            OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.initiated_by))
     + (SELECT count(*) FROM ledger_entries e
         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.account_id)
            OR NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = e.transfer_id))
     + (SELECT count(*) FROM accounts a
         WHERE a.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.user_id))
     + (SELECT count(*) FROM account_usage u WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.account_id))
"""


# core/accounts/usage.py's rows, from the transfers: each TRANSFER's amount summed per source account
# and UTC day, and per UTC month. Counted where the generator's rows and these differ.
_USAGE_DIFFERS = """
WITH engine AS (
    SELECT source_account_id AS account_id, p.period, p.starts_on, sum(amount) AS used
      FROM transfers
     CROSS JOIN LATERAL (VALUES ('DAY', CAST(created_at AT TIME ZONE 'UTC' AS date)),
                                ('MONTH', CAST(date_trunc('month', created_at AT TIME ZONE 'UTC') AS date)))
           AS p(period, starts_on)
     WHERE kind = 'TRANSFER'
     GROUP BY 1, 2, 3)
SELECT count(*) FROM (
    (SELECT account_id, period, starts_on, used FROM engine
     EXCEPT ALL SELECT account_id, period, starts_on, used FROM account_usage)
    UNION ALL
    (SELECT account_id, period, starts_on, used FROM account_usage
     EXCEPT ALL SELECT account_id, period, starts_on, used FROM engine)) d
"""


_NOT_V4 = """
SELECT (SELECT count(*) FROM users WHERE CAST(id AS text) !~ %(v4)s)
     + (SELECT count(*) FROM accounts WHERE CAST(id AS text) !~ %(v4)s)
     + (SELECT count(*) FROM transfers WHERE CAST(id AS text) !~ %(v4)s)
     + (SELECT count(*) FROM ledger_entries WHERE CAST(id AS text) !~ %(v4)s)
"""


def _indexes(conninfo: str) -> set[tuple[str, str]]:
    with psycopg.connect(conninfo) as conn:
        return set(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'").fetchall())


def _constraints(conninfo: str) -> set[tuple[str, ...]]:
    """Every constraint of the schema as the catalogue states it (the load drops and adds back keys
    and the foreign keys to them)."""
    with psycopg.connect(conninfo) as conn:
        return set(
            conn.execute(
                "SELECT CAST(conrelid AS regclass)::text, conname, pg_get_constraintdef(oid), convalidated::text,"
                " condeferrable::text, coalesce(CAST(conindid AS regclass)::text, '')"
                " FROM pg_constraint WHERE connamespace = CAST('public' AS regnamespace)"
            ).fetchall()
        )


def test_the_generated_book_reconciles_and_every_read_answers(stack) -> None:  # type: ignore[no-untyped-def]
    # The migrated schema, copied from the template made right after bank_test's migration (what
    # `alembic upgrade head` makes; tests/integration/scratch.py) instead of migrating again.
    url = scratch.clone(stack, SCRATCH_DB)
    settings = scale.settings_for(url, stack.redis_url)
    admin_id, settlement_id = scale.prepare(settings)
    conninfo = db.url(url, SCRATCH_DB)
    indexes_before, constraints_before = _indexes(conninfo), _constraints(conninfo)
    audit_when_written: list[int] = []

    def audit_written() -> None:
        with psycopg.connect(conninfo) as conn:
            audit_when_written.append(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])  # type: ignore[index]

    book = build(
        conninfo,
        transfers=TRANSFERS,
        accounts=ACCOUNTS,
        admin_id=admin_id,
        settlement_id=settlement_id,
        password_hash=hash_password(scale.PASSWORD),
        partitions=settings.settle_partitions,
        audit_chunk=AUDIT_CHUNK,
        audit_written=audit_written,
    )

    assert _indexes(conninfo) == indexes_before  # each one it set aside for the load is back, the same
    assert _constraints(conninfo) == constraints_before  # keys and foreign keys too, validated

    report, _ = scale.validate(settings)
    assert report.ok, report.problems[:10]
    assert report.accounts_checked == ACCOUNTS + 1
    with psycopg.connect(conninfo) as conn:
        assert conn.execute(_BROKEN_CHAINS).fetchone() == (0,)
        assert conn.execute(_DANGLING).fetchone() == (0,)
        assert conn.execute(_USAGE_DIFFERS).fetchone() == (0,)
        # Every id the generator drew is a version 4 uuid (variant 10xx), as uuid.uuid4() makes them.
        assert conn.execute(
            _NOT_V4, {"v4": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"}
        ).fetchone() == (0,)
        kinds = dict(conn.execute("SELECT kind, count(*) FROM transfers GROUP BY kind").fetchall())
        assert kinds["TRANSFER"] == TRANSFERS and 0 < kinds["DEPOSIT"] <= ACCOUNTS
        assert report.transfers_checked == TRANSFERS + kinds["DEPOSIT"]
        lowest = conn.execute("SELECT min(balance_after) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id"
                              " WHERE a.kind = 'CUSTOMER'").fetchone()  # fmt: skip
        assert lowest is not None and lowest[0] >= 0
        for heavy in book.heavy_accounts:  # each about 10 % of the traffic: 200 of 2,000
            (n,) = conn.execute(
                "SELECT count(*) FROM transfers WHERE kind = 'TRANSFER'"
                " AND %s IN (source_account_id, destination_account_id)",
                (heavy,),
            ).fetchone() or (0,)
            assert 120 <= n <= 300, n
        routed = conn.execute("SELECT source_account_id, partition FROM transfers WHERE kind = 'TRANSFER'").fetchall()
        assert all(p == partition_of(source, settings.settle_partitions) for source, p in routed)
        audit = dict(conn.execute("SELECT action, count(*) FROM audit_log GROUP BY action").fetchall())
        assert audit["transfer.requested"] == audit["transfer.completed"] == TRANSFERS
        assert audit["deposit.completed"] == kinds["DEPOSIT"]
        assert conn.execute("SELECT count(*) FROM audit_seals").fetchone() == (0,)  # the sealer's to write
        assert audit_when_written == [sum(audit.values())]  # told once, when every audit row was in
        # Committed a few moves at a time, as the engine's batches commit: no transaction holds more
        # than two rows a move, so the sealer (cutting at transactions) never takes the book whole.
        per_transaction = conn.execute("SELECT count(*) FROM audit_log GROUP BY txid").fetchall()
        assert len(per_transaction) >= 8 and max(n for (n,) in per_transaction) <= 2 * AUDIT_CHUNK

    sealer = scale.Sealer(settings, limit=SEAL_LIMIT)
    sealer.start()
    sealing = sealer.finish()
    assert sealing["rows"] == sum(audit.values()) and sealing["unsealed_left"] == 0
    assert sealing["batches"] >= 4 and sealing["largest_batch"] <= SEAL_LIMIT + 2 * AUDIT_CHUNK
    chain, _ = scale.verify(settings)
    assert chain.ok and chain.rows_checked == sum(audit.values()), chain

    rows = scale.measure(settings, book, repeats=1)
    assert [r["read"] for r in rows] == [what for what, _, _ in scale.reads(book, "x")]
    assert all(r["median_ms"] > 0 for r in rows)

    stored = {r["table"]: r for r in scale.sizes(conninfo, book.transfers)}
    assert {"transfers", "ledger_entries", "audit_log", "accounts", "users"} <= set(stored)
    assert stored["ledger_entries"]["kind"] == "transfer" and stored["accounts"]["kind"] == "account"
    assert stored["transfers"]["per_transfer"] > 0 and stored["ledger_entries"]["indexes"] > 0
    assert "per transfer, kept beyond the outbox window" in scale.size_table(list(stored.values()), book.transfers)
