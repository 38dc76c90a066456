"""Postgres access for the harness: database URLs, and the figures and checks read from the ledger.

The queries name the tables of the current schema (transfers, ledger_entries, accounts); they are the
one place to change if the schema does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

__all__ = ["make_url"]

FINAL = ("COMPLETED", "FAILED")


def url(server_url: str, database: str) -> str:
    """A libpq URL (no SQLAlchemy driver suffix) for ``database`` on the server of ``server_url``."""
    u = make_url(server_url).set(drivername="postgresql", database=database)
    return u.render_as_string(hide_password=False)


def recreate(server_url: str, database: str) -> str:
    with psycopg.connect(url(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    return url(server_url, database)


def server_version(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def balance_sum(conninfo: str, accounts: list[str]) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT COALESCE(SUM(balance), 0) FROM accounts WHERE id = ANY(%s::uuid[])", (accounts,))
        return int(row.fetchone()[0])  # type: ignore[index]


def unfinished(conninfo: str, accounts: list[str]) -> int:
    """Transfers out of these accounts that are not final yet."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM transfers WHERE source_account_id = ANY(%s::uuid[]) AND kind = 'TRANSFER'"
            " AND status NOT IN ('COMPLETED', 'FAILED')",
            (accounts,),
        ).fetchone()
    return int(row[0]) if row else 0


def settlement(conninfo: str, accounts: list[str]) -> dict[str, Any]:
    """Counts and times of the transfers out of ``accounts`` (the run's fresh customers)."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            """SELECT count(*), min(created_at), max(created_at),
                      max(completed_at) FILTER (WHERE status IN ('COMPLETED', 'FAILED')),
                      min(completed_at) FILTER (WHERE status IN ('COMPLETED', 'FAILED'))
                 FROM transfers WHERE source_account_id = ANY(%s::uuid[]) AND kind = 'TRANSFER'""",
            (accounts,),
        ).fetchone()
        statuses = conn.execute(
            "SELECT status::text, count(*) FROM transfers WHERE source_account_id = ANY(%s::uuid[])"
            " AND kind = 'TRANSFER' GROUP BY 1 ORDER BY 1",
            (accounts,),
        ).fetchall()
    assert row is not None
    count, first_created, last_created, last_final, first_final = row
    return {
        "count": int(count),
        "first_created": _epoch(first_created),
        "last_created": _epoch(last_created),
        "last_final": _epoch(last_final),
        "first_final": _epoch(first_final),
        "statuses": {str(s): int(n) for s, n in statuses},
    }


def applied_once(conninfo: str, accounts: list[str], balance_before: int) -> dict[str, Any]:
    """Nothing applied twice: at most two entries per transfer (two when COMPLETED, none otherwise,
    summing to zero), the run's balances unchanged in sum, every balance equal to its ledger, and all
    customer plus settlement balances summing to zero per currency."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        per_transfer = conn.execute(
            """SELECT COALESCE(max(n), 0), count(*) FILTER (WHERE bad)
                 FROM (SELECT count(e.id) AS n,
                              (t.status = 'COMPLETED' AND (count(e.id) <> 2 OR COALESCE(sum(e.amount), 0) <> 0))
                              OR (t.status <> 'COMPLETED' AND count(e.id) <> 0) AS bad
                         FROM transfers t LEFT JOIN ledger_entries e ON e.transfer_id = t.id
                        WHERE t.source_account_id = ANY(%s::uuid[]) AND t.kind = 'TRANSFER'
                        GROUP BY t.id, t.status) x""",
            (accounts,),
        ).fetchone()
        after = conn.execute(
            "SELECT COALESCE(SUM(balance), 0) FROM accounts WHERE id = ANY(%s::uuid[])", (accounts,)
        ).fetchone()
        ledger_mismatches = conn.execute(
            """SELECT count(*) FROM accounts a
                 LEFT JOIN (SELECT account_id, sum(amount) AS s FROM ledger_entries GROUP BY 1) l
                   ON l.account_id = a.id
                WHERE a.balance <> COALESCE(l.s, 0)"""
        ).fetchone()
        nonzero_currencies = conn.execute(
            "SELECT currency, sum(balance) FROM accounts GROUP BY 1 HAVING sum(balance) <> 0"
        ).fetchall()
    assert per_transfer is not None and after is not None and ledger_mismatches is not None
    checks: dict[str, Any] = {
        "max_entries_per_transfer": int(per_transfer[0]),
        "transfers_with_wrong_entries": int(per_transfer[1]),
        "run_balance_delta": int(after[0]) - balance_before,
        "accounts_balance_ne_ledger": int(ledger_mismatches[0]),
        "currencies_not_summing_to_zero": {str(c): int(s) for c, s in nonzero_currencies},
    }
    checks["ok"] = (
        checks["max_entries_per_transfer"] <= 2
        and checks["transfers_with_wrong_entries"] == 0
        and checks["run_balance_delta"] == 0
        and checks["accounts_balance_ne_ledger"] == 0
        and not checks["currencies_not_summing_to_zero"]
    )
    return checks


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None
