"""The errors a task retries on: named and transient, so a retry is safe."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from core.locks import LockTimeout

# Transient: the transfer is still PENDING after any of these, so a retry is safe.
TRANSIENT = (OperationalError, LockTimeout)
