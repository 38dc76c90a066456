"""Which errors a task retries: faults that pass, after which the transfers are still PENDING, so
a retry is safe. Anything else is the batch's own and would fail every retry (worker/settlement.py
isolates its transfer, core/transfers/poison.py)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

from core.locks import LockTimeout

# For ``autoretry_for``: the classes that are always transient.
TRANSIENT = (OperationalError, LockTimeout)

# SQLSTATE classes of faults that pass: connection lost (08), a transaction rolled back by a
# conflict (40), out of resources (53), operator intervention: a timeout, a shutdown (57).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
# A lock wait over lock_timeout (55P03); this session's transaction ended by Postgres because
# its process was paused past idle_in_transaction_session_timeout (25P03, an InternalError).
_TRANSIENT_STATES = frozenset({"55P03", "25P03"})


def is_transient(exc: BaseException) -> bool:
    """True for a fault that passes (a retry is safe and may succeed), False for the batch's own."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:  # the connection broke under the statement
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_STATES
    return False
