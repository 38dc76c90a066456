"""Work that must happen only once the transaction that caused it has committed.

A message names rows (a partition's PENDING transfers, a webhook delivery); published before
the commit, a consumer could look before the rows exist, or act for rows that roll back. So
code inside a transaction says ``publish_after_commit(session, fn, *args)`` and the session runs
``fn`` after its commit succeeds, exactly once, and never after a rollback: the rule holds by
construction instead of by where a call is placed (pypi/warehouse, Zulip's ``on_commit``).

core publishes nothing itself (it never imports Celery): callers pass the publishing callable.
A callable that raises is logged and the others still run; the commit stands, and what was not
published is found again by its backstop (the sweeper, the webhook dispatcher).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = structlog.get_logger(__name__)

P = ParamSpec("P")

_PENDING = "bank.after_commit"


@dataclass(frozen=True)
class _Pending:
    # The innermost transaction (a savepoint, or the root) it was registered in: rolling that
    # savepoint back discards it, while the rest of the transaction may still commit.
    transaction: SessionTransaction
    call: Callable[[], Any]


def publish_after_commit(session: Session, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` once the session's current transaction has committed; never if
    it (or the savepoint this is called in) rolls back. Needs a session made by
    ``core.db.make_session_factory`` and an open transaction."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        # With no transaction there is no commit to wait for: a caller bug, not a publish now.
        raise RuntimeError("publish_after_commit needs an open transaction")
    session.info.setdefault(_PENDING, []).append(_Pending(transaction, partial(fn, *args, **kwargs)))


def install(factory: sessionmaker[Session]) -> None:
    """Run the registered callables after every commit of the factory's sessions."""
    event.listen(factory, "after_commit", _run)
    event.listen(factory, "after_soft_rollback", _discard_rolled_back)
    event.listen(factory, "after_transaction_end", _discard_on_end)


def _run(session: Session) -> None:
    # A released savepoint also fires after_commit; its work waits for the root's commit.
    if session.in_nested_transaction():
        return
    for pending in session.info.pop(_PENDING, []):
        try:
            pending.call()
        except Exception as exc:  # the commit stands: raising here would turn it into a failure
            log.error("publish_after_commit_failed", call=_name(pending.call), error=type(exc).__name__)


def _discard_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    if pending:
        session.info[_PENDING] = [p for p in pending if not _within(p.transaction, previous_transaction)]


def _discard_on_end(session: Session, transaction: SessionTransaction) -> None:
    # The root ended (committed and run, rolled back, or closed while open): whatever is left
    # belonged to a transaction that did not commit, and must not run at the session's next commit.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _name(call: Callable[[], Any]) -> str:
    fn = call.func if isinstance(call, partial) else call
    return getattr(fn, "__qualname__", repr(fn))
