"""A pooled connection that died while idle is replaced when its first statement fails, and that
statement is sent again on the new connection: what the pool's pre-ping did, without its round
trip at every checkout.

Only the first statement of a checkout is ever sent twice, and only when it failed because the
connection was gone (the dialect's ``is_disconnect``) and the connection is not in autocommit.
Nothing ran before it on that connection, and in a transaction nothing it did can have committed
(no COMMIT was sent; Postgres rolls back a transaction whose connection died), so sending it again
on a new connection is the same request. Any later statement, the COMMIT, or a statement on a
connection that already ran one fails as before (``database_unavailable``: 503, and the client's
retry with its Idempotency-Key is safe).

In autocommit, where a statement may have committed before its connection died, and before a
COPY through the driver (``ensure_live``), the connection is pinged before the first statement
instead, as pre-ping did. A multi-row INSERT as a checkout's first statement (SQLAlchemy's
insertmanyvalues, which holds its cursor across batches) is neither pinged nor sent again.

The replacement is the pool's own (the record's reconnect, every older pooled connection
invalidated: a dead one usually means a restart or a failover), with the connection's isolation
level and other characteristics set again on the new one.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.engine.interfaces import DBAPIConnection, ExecuteStyle, ExecutionContext
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

_UNCHECKED = "bank_no_statement_yet"  # in a checked-out connection's info until its first statement


def retry_on_dead_connection(engine: Engine) -> None:
    event.listen(engine, "checkout", _checked_out)
    event.listen(engine, "do_execute", _do_execute)
    event.listen(engine, "do_execute_no_params", _do_execute_no_params)
    event.listen(engine, "do_executemany", _do_executemany)


def _checked_out(_dbapi: DBAPIConnection, _record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
    proxy.info[_UNCHECKED] = True


def ensure_live(connection: Connection) -> None:
    """Before a statement sent through the driver itself (not through SQLAlchemy): if it would be
    the checkout's first, ping the connection and replace it if it is gone."""
    proxy = connection.connection
    if _first_on_checkout(proxy):
        _ping_or_replace(connection, proxy)


def _first_on_checkout(proxy: PoolProxiedConnection) -> bool:
    """True once per checkout, at its first statement."""
    try:
        info = proxy.info
    except NotImplementedError:  # the dialect's own statements on a new connection: not a checkout
        return False
    return bool(info.pop(_UNCHECKED, False))


def _do_execute(cursor: Any, statement: str, parameters: Any, context: ExecutionContext) -> bool:
    return _first(context, lambda c: context.dialect.do_execute(c, statement, parameters, context))


def _do_execute_no_params(cursor: Any, statement: str, context: ExecutionContext) -> bool:
    return _first(context, lambda c: context.dialect.do_execute_no_params(c, statement, context))


def _do_executemany(cursor: Any, statement: str, parameters: Any, context: ExecutionContext) -> bool:
    return _first(context, lambda c: context.dialect.do_executemany(c, statement, parameters, context))


def _first(context: ExecutionContext, send: Any) -> bool:
    """Sends the checkout's first statement itself (True: SQLAlchemy does not send it again);
    any later statement is left to SQLAlchemy (False)."""
    connection = context.root_connection
    proxy = connection.connection
    if not _first_on_checkout(proxy) or context.execute_style is ExecuteStyle.INSERTMANYVALUES:
        # A multi-row INSERT keeps SQLAlchemy's cursor across its batches: on a dead connection
        # it fails as any statement would (none of the API's or workers' units of work starts with one).
        return False
    if getattr(proxy.dbapi_connection, "autocommit", True):
        # It may commit as it runs, so it is never sent twice: the connection is pinged first.
        if not _ping_or_replace(connection, proxy):
            return False  # alive: SQLAlchemy sends it
    else:
        try:
            send(context.cursor)
            return True
        except context.dialect.loaded_dbapi.Error as error:
            if not context.dialect.is_disconnect(error, proxy.dbapi_connection, context.cursor):
                raise
            _replace(connection, proxy, error)
    context.cursor = context.create_cursor()  # SQLAlchemy reads the result from it
    send(context.cursor)  # a second failure is answered as any other
    return True


def _ping_or_replace(connection: Connection, proxy: PoolProxiedConnection) -> bool:
    """True if the connection was gone and has been replaced."""
    dialect = connection.dialect
    try:
        alive = dialect.do_ping(cast(DBAPIConnection, proxy.dbapi_connection))
    except dialect.loaded_dbapi.Error as error:
        if not dialect.is_disconnect(error, proxy.dbapi_connection, None):
            raise
        _replace(connection, proxy, error)
        return True
    if not alive:
        _replace(connection, proxy, None)
    return not alive


def _replace(connection: Connection, proxy: PoolProxiedConnection, error: BaseException | None) -> None:
    """The pool's reconnect in place (as its pre-ping did on a failed ping): the same checkout, a
    new DBAPI connection under it, every older pooled connection recycled on its next checkout."""
    fairy: Any = proxy  # the pool's _ConnectionFairy, handled as its own checkout handles it
    record = fairy._connection_record
    record.invalidate(error)
    connection.engine.pool._invalidate(proxy, error, _checkin=False)
    fairy.dbapi_connection = record.get_connection()
    dialect = cast(DefaultDialect, connection.dialect)
    options = connection.get_execution_options()
    for name, characteristic in dialect.connection_characteristics.items():
        if name in options:
            characteristic.set_characteristic(dialect, fairy.dbapi_connection, options[name])
