"""`flask --app web create-db` creates the database DATABASE_URL names, once: "Running each process by hand"
runs it before `alembic upgrade head`, which fails on a server without that database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from devtools import services

pytestmark = pytest.mark.commits  # a database of its own, made and dropped by subprocesses

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # As README's "Running each process by hand" has it: DATABASE_URL and nothing else of the suite's settings.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "DATABASE_URL": url}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def _drop(stack: services.Services, name: str) -> None:
    admin = make_url(stack.database("postgres")).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_create_db_then_migrate_and_again(stack) -> None:  # type: ignore[no-untyped-def]
    name = f"bank_create_db_{uuid.uuid4().hex[:8]}"
    url = stack.database(name)
    try:
        before = _run(url, str(BIN / "alembic"), "upgrade", "head")
        assert before.returncode != 0 and f'database "{name}" does not exist' in before.stderr

        first = _run(url, str(BIN / "flask"), "--app", "web", "create-db")
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"database {name} created" in first.stdout
        migrated = _run(url, str(BIN / "alembic"), "upgrade", "head")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr

        again = _run(url, str(BIN / "flask"), "--app", "web", "create-db")
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"database {name} already exists" in again.stdout
    finally:
        _drop(stack, name)
