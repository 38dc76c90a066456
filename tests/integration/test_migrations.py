"""The schema comes from Alembic, and the models have not drifted from it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from devtools import services

# Alembic runs in subprocesses, against the test database (check) and a scratch one it builds.
pytestmark = pytest.mark.commits

ROOT = Path(__file__).resolve().parents[2]


def test_alembic_check_finds_no_drift() -> None:
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run([str(alembic), "check"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


SCRATCH_DB = "bank_test_migration_0006"
ROW = "INSERT INTO audit_log (action, entity_type, entity_id, details) VALUES (:a, 'test', :e, '{\"n\": 1}')"
OLD_CHAIN_BROKEN = """
SELECT count(*) FROM (
    SELECT seq, row_hash, lag(seq) OVER w AS prev_seq, lag(row_hash) OVER w AS prev_row, prev_hash,
           audit_row_hash(seq, occurred_at, actor_id, action, entity_type, entity_id, request_id, details,
                          prev_hash) AS expected
      FROM audit_log WINDOW w AS (ORDER BY seq)
) x WHERE seq IS NULL OR row_hash <> expected OR seq <> coalesce(prev_seq, 0) + 1
       OR prev_hash IS DISTINCT FROM prev_row
"""


def _alembic(url: str, *args: str) -> None:
    """``alembic <args>`` on ``url``, in this process: the same command line parsed by Alembic's own
    parser, alembic.ini and migrations/env.py, without a Python start and the app's imports (seconds of
    CPU each) per step. The command line as an operator runs it is the suite's own start
    (tests/conftest.py, processes.migrate) and test_create_db.py's. env.py leaves our logging alone
    (``configure_logger``) and reads DATABASE_URL, set for the call only."""
    from alembic.config import CommandLine, Config

    command_line = CommandLine()
    options = command_line.parser.parse_args(list(args))
    config = Config(str(ROOT / "alembic.ini"), cmd_opts=options)
    config.attributes["configure_logger"] = False
    kept = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = url
    try:
        with warnings.catch_warnings():  # alembic.ini's prepend_sys_path: what the command line prints too
            warnings.filterwarnings("ignore", "No path_separator found", DeprecationWarning)
            command_line.run_cmd(config, options)
    finally:
        os.environ["DATABASE_URL"] = kept


def _insert(engine: Engine, *actions: str) -> None:
    with engine.begin() as conn:
        for action in actions:
            conn.execute(text(ROW), {"a": action, "e": action})


def test_0006_moves_the_trigger_chain_to_seals_and_back(stack) -> None:  # type: ignore[no-untyped-def]
    """Rows chained by the 0002 trigger verify after 0006; a downgrade rebuilds the old chain."""
    from core.audit.seal import seal
    from core.audit.verify import verify_chain
    from core.config import Settings
    from core.db import make_engine

    url = services.recreate_database(stack, SCRATCH_DB)
    engine = make_engine(Settings(database_url=url), pool_size=2)
    try:
        _alembic(url, "upgrade", "0005")
        _insert(engine, "old.1", "old.2")
        _insert(engine, "old.3")
        # The old trigger: a second writer waits for the first one's commit.
        with engine.begin() as first, engine.connect() as second:
            first.execute(text(ROW), {"a": "old.4", "e": "old.4"})
            second.execute(text("SET lock_timeout = '300ms'"))
            with pytest.raises(DBAPIError, match="lock timeout"):
                second.execute(text(ROW), {"a": "blocked", "e": "blocked"})
            second.rollback()

        _alembic(url, "upgrade", "head")
        with Session(engine) as s:
            result = verify_chain(s)
            assert (result.ok, result.rows_checked, result.batches_checked, result.unsealed_rows) == (True, 4, 1, 0)
        _insert(engine, "new.1", "new.2")
        with Session(engine) as s, s.begin():
            assert seal(s).sealed == 2
        _insert(engine, "new.3")  # not sealed when the downgrade runs
        with Session(engine) as s:
            result = verify_chain(s)
            assert (result.ok, result.rows_checked, result.batches_checked, result.unsealed_rows) == (True, 6, 2, 1)

        _alembic(url, "downgrade", "0005")
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM audit_log")) == 7
            assert conn.scalar(text(OLD_CHAIN_BROKEN)) == 0

        _alembic(url, "upgrade", "head")
        with Session(engine) as s:
            result = verify_chain(s)
            assert (result.ok, result.rows_checked, result.batches_checked) == (True, 7, 1)
    finally:
        engine.dispose()
        with psycopg.connect(
            make_url(stack.database_url).set(drivername="postgresql", database="postgres").render_as_string(False),
            autocommit=True,
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
