"""Create the application's database on its server when it does not exist yet (before the first
``alembic upgrade head``). Idempotent: run it on every deploy or dev start."""

from __future__ import annotations

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

DUPLICATE_DATABASE = "42P04"


def create_database_if_missing(url: str) -> bool:
    """Create the database ``url`` names, connecting to the same server's ``postgres`` database with the
    same credentials; True if it was created, False if it already existed (also when another process
    created it meanwhile)."""
    target = make_url(url)
    name = target.database
    if not name:
        raise ValueError("the database URL names no database")
    maintenance = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with maintenance.connect() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}):
                return False
            quoted = maintenance.dialect.identifier_preparer.quote_identifier(name)
            try:
                conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            except ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) == DUPLICATE_DATABASE:
                    return False
                raise
            return True
    finally:
        maintenance.dispose()
