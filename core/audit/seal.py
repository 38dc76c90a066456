"""Sealing the audit log: chaining committed audit rows in batches, off the writers' path.

Writers insert audit rows with no lock; each row records its transaction (``audit_log.txid``).
One sealer at a time takes the rows whose transaction is below the xmin horizon of a fresh
snapshot: every transaction there has committed (its rows are visible) or aborted (its rows
never exist), so no row can later appear in front of a sealed one. The chaining itself is one
call of ``audit_seal_batch()`` (migration 0006) per batch: seq, prev_hash and row_hash per row
in (txid, id) order, the batch's Merkle root (core/audit/merkle.py) and the root chaining the batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.models import AuditLog, AuditSealBatch

# pg_try_advisory_xact_lock key taken by the sealer only, never by writers: "audit sealer".
SEAL_LOCK = 7_201_005
SEAL_BATCH = 5000


@dataclass(frozen=True)
class SealResult:
    busy: bool  # another sealer holds the lock: nothing was done
    sealed: int = 0
    batch_id: int | None = None
    horizon: int | None = None  # every audit row with a txid below it is sealed


@dataclass(frozen=True)
class Unsealed:
    rows: int
    oldest_age_seconds: float  # 0 when every row is sealed


def seal(session: Session, *, limit: int = SEAL_BATCH) -> SealResult:
    """Seal up to ``limit`` audit rows (a little more rather than split one transaction's rows).

    Run it in a transaction of its own, at READ COMMITTED, and commit: a caller that wants
    everything sealed loops while ``sealed >= limit``. Returns ``busy`` without doing anything
    when another sealer is at work.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    if not session.execute(select(func.pg_try_advisory_xact_lock(SEAL_LOCK))).scalar_one():
        return SealResult(busy=True)
    row = session.execute(
        text("SELECT o_batch_id, o_sealed, o_horizon FROM audit_seal_batch(:limit)"), {"limit": limit}
    ).one()
    return SealResult(busy=False, sealed=row.o_sealed, batch_id=row.o_batch_id, horizon=row.o_horizon)


def sealed_horizon(session: Session) -> int:
    """The last batch's horizon: audit rows with a txid below it are sealed, the others not."""
    last = session.scalar(select(AuditSealBatch.horizon).order_by(AuditSealBatch.id.desc()).limit(1))
    return last if last is not None else 0


def unsealed(session: Session, now: datetime) -> Unsealed:
    """How many committed audit rows wait for the sealer, and the age of the oldest one."""
    count, oldest = session.execute(
        select(func.count(), func.min(AuditLog.occurred_at)).where(AuditLog.txid >= sealed_horizon(session))
    ).one()
    return Unsealed(count, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
