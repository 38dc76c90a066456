"""Engine and session factory. The caller (request, task, CLI) owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg import _queries, sql
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import after_commit, first_statement
from core.config import Settings

# libpq options that bound how long anything waits on a host that died or was cut off (a
# failed-over primary, a partition): no process hangs on a dead socket for more than a few
# seconds, so the request ends as a 503 and the next connection finds the new primary (with a
# multi-host DATABASE_URL and target_session_attrs=read-write, libpq tries each host in turn).
# TCP options are ignored on a Unix socket, where the kernel reports a dead server at once.
CONNECTION_LIVENESS: dict[str, Any] = {
    "connect_timeout": 5,  # seconds per host tried: a host that does not answer is skipped
    "keepalives": 1,
    "keepalives_idle": 5,  # an idle connection (or one awaiting a reply) is probed after 5 s ...
    "keepalives_interval": 2,
    "keepalives_count": 3,  # ... and declared dead after 3 unanswered probes: ~11 s
    "tcp_user_timeout": 10000,  # ms: data sent and never acknowledged (keepalives do not cover it)
}


POOL_RECYCLE_SECONDS = 1800

# psycopg converts a statement's %(name)s placeholders to $n on every execution unless the
# statement is at most this long (its own default: 4,096 bytes), when the conversion is cached.
# The one accept statement is ~6 KB, and its conversion was ~6 % of the API's CPU per accept.
# The cache keeps 128 statements (psycopg's lru_cache): at this bound at most a few MB.
_queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, 16 * 1024)


def make_engine(settings: Settings, *, pool_size: int = 5) -> Engine:
    # Timeouts bound every statement and lock wait so a stuck row never hangs a worker forever.
    options = (
        f"-c statement_timeout={settings.db_statement_timeout_ms} "
        f"-c lock_timeout={settings.db_lock_timeout_ms} "
        "-c idle_in_transaction_session_timeout=60000"
    )
    engine = create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=5,
        # No pre-ping (a round trip at every checkout): a pooled connection that died is found by
        # the first statement sent on it, which is then sent again on a new connection
        # (first_statement.py); no pooled connection is older than this, so none outlives a
        # server or proxy limit on a connection's age.
        pool_recycle=POOL_RECYCLE_SECONDS,
        hide_parameters=True,  # a logged or raised SQL error never carries a password hash or a token
        connect_args={"options": options, **CONNECTION_LIVENESS},
    )
    first_statement.retry_on_dead_connection(engine)
    return engine


# SQLSTATEs of a session Postgres ended: connection exceptions (class 08), a shutdown or a
# terminated backend (57P01-57P03), and idle_in_transaction_session_timeout (25P03, which
# psycopg raises as an InternalError, not an OperationalError).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "25P03"})


def database_unavailable(error: BaseException) -> bool:
    """Postgres could not be reached or ended the connection (a restart, a failover, a
    terminated backend, a timeout): nothing the request did is known to have committed, and a
    retry with the same idempotency key is safe. Answered as 503 with Retry-After, never as a bug."""
    if isinstance(error, OperationalError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return error.connection_invalidated or sqlstate.startswith("08") or sqlstate in _SESSION_ENDED


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: results are read after commit to build responses.
    factory = sessionmaker(engine, expire_on_commit=False)
    after_commit.install(factory)  # publish_after_commit works in every session the app makes
    return factory


def database_now(session: Session) -> datetime:
    """Now on the database's clock: what decides an expiry (a hold's, a PIN or login lock's, a
    webhook retry's) and stamps what one is later compared with, alike on every host whatever
    its own clock says. The moment of asking (clock_timestamp()), not the transaction's start:
    a long transaction still sees time pass."""
    return session.execute(select(func.clock_timestamp())).scalar_one()


# Row locks are FOR NO KEY UPDATE: we never change a key, and unlike FOR UPDATE it does not
# conflict with the FOR KEY SHARE locks that foreign-key checks take (inserting a transfer
# or a ledger entry that references an account), which would otherwise deadlock against
# settlement on a hot account.
ROW_LOCK: dict[str, Any] = {"key_share": True}


def copy_rows(session: Session, table: str, columns: tuple[str, ...], rows: Iterable[Sequence[Any]]) -> None:
    """Append rows with ``COPY … FROM STDIN`` in the session's transaction: the cheapest bulk write.

    For the hot paths' multi-row inserts (a settlement batch's entries, audit rows and events):
    no statement to compile and no per-row round trip. Column defaults and triggers apply as
    for INSERT; values are adapted by psycopg (wrap JSON in ``psycopg.types.json.Jsonb``).
    """
    connection = session.connection()
    first_statement.ensure_live(connection)  # COPY bypasses SQLAlchemy: no retry would cover it
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
