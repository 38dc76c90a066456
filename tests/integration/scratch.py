"""Small databases of their own for the tests that check a whole book or a whole audit chain.

The run's ``bank_test`` holds every row the suite has committed so far (in a whole-suite run, the
e2e, chaos and ha tiers' load runs too), so a CLI check over it (``reconcile``, ``verify-audit``)
or a migration test gets slower the later it runs. Right after ``alembic upgrade head`` made
``bank_test``, tests/conftest.py copies it to ``TEMPLATE`` (``make_template``); ``clone`` makes a
database from that copy (Postgres copies the files: a tenth of a second, where a migration takes
seconds), migrated exactly as ``bank_test`` was and empty of the suite's rows.
"""

from __future__ import annotations

import psycopg
from sqlalchemy import make_url

from devtools import services

TEMPLATE = "bank_test_template"


def _admin_conninfo(stack: services.Services) -> str:
    return make_url(stack.database_url).set(drivername="postgresql", database="postgres").render_as_string(False)


def make_template(stack: services.Services, source: str) -> None:
    """``TEMPLATE``, a copy of ``source`` (no one may be connected to it: call it before any test runs)."""
    with psycopg.connect(_admin_conninfo(stack), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}" TEMPLATE "{source}"')


def clone(stack: services.Services, name: str) -> str:
    """A fresh database ``name`` made from ``TEMPLATE`` (dropped first if it exists); its URL."""
    with psycopg.connect(_admin_conninfo(stack), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return stack.database(name)


def drop(stack: services.Services, name: str) -> None:
    with psycopg.connect(_admin_conninfo(stack), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
