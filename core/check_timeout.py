"""A statement timeout for the long checks (reconcile, verify-audit) of their own.

The app's connections carry a short statement timeout (core/db.py) that protects the API; a
full check of a large book runs single statements far longer than that, so a check sets its
own, for its transaction only.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def limit_statement_time(session: Session, seconds: float) -> None:
    """Set this transaction's statement timeout; 0 means none. Ends with the transaction."""
    if seconds < 0:
        raise ValueError("a statement timeout cannot be negative")
    # SET LOCAL takes no bind parameters; set_config(..., true) is the same, parameterised.
    session.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(round(seconds * 1000))})
