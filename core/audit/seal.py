"""Sealing the audit log: chaining committed audit rows in batches, off the writers' path.

Writers insert audit rows with no lock; each row records its transaction (``audit_log.txid``).
One sealer at a time takes the rows whose transaction is below the xmin horizon of a fresh
snapshot: every transaction there has committed (its rows are visible) or aborted (its rows
never exist), so no row can later appear in front of a sealed one. A batch gives its rows the
next seqs in (txid, id) order, their leaf version 2 hashes (core/audit/leaf.py), and one
``audit_seal_batches`` row: the Merkle roots of the row and context hashes and the root that
chains it to the previous batch (core/audit/merkle.py). Batch ids follow each other with no gap
(the last id + 1, under the sealer's lock): a client walks the roots by ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, text
from sqlalchemy.orm import Session

from core.audit import leaf
from core.audit.merkle import chained_root, merkle_root
from core.db import copy_rows
from core.models import AuditLog, AuditSeal, AuditSealBatch

# pg_try_advisory_xact_lock key taken by the sealer only, never by writers: "audit sealer".
SEAL_LOCK = 7_201_005
SEAL_BATCH = 5000

# The txid after the limit-th unsealed row of a finished transaction: the batch ends there, so
# it holds a little more than the limit rather than part of one transaction's rows.
_HORIZON = """
SELECT a.txid + 1 FROM audit_log a
 WHERE a.txid >= :prev_horizon AND a.txid < :xmin
 ORDER BY a.txid, a.id OFFSET :skip LIMIT 1
"""
# What leaf version 2 hashes of an audit row (with the seq the sealer gives it).
HASHED_COLUMNS = (
    AuditLog.id,
    AuditLog.occurred_at,
    AuditLog.actor_id,
    AuditLog.action,
    AuditLog.entity_type,
    AuditLog.entity_id,
    AuditLog.request_id,
    AuditLog.details,
)
_SEAL_COLUMNS = ("seq", "audit_id", "row_hash", "context_hash", "batch_id")


@dataclass(frozen=True)
class SealResult:
    busy: bool  # another sealer holds the lock: nothing was done
    sealed: int = 0
    batch_id: int | None = None
    horizon: int | None = None  # every audit row with a txid below it is sealed
    root: str | None = None  # the new batch's root (GET /audit/roots/{batch_id})


@dataclass(frozen=True)
class Unsealed:
    rows: int
    oldest_age_seconds: float  # 0 when every row is sealed


@dataclass(frozen=True)
class LeafHashes:
    seq: int
    audit_id: int
    row_hash: str
    context_hash: str


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
    last = session.execute(
        select(AuditSealBatch.id, AuditSealBatch.horizon, AuditSealBatch.root)
        .order_by(AuditSealBatch.id.desc())
        .limit(1)
    ).one_or_none()
    prev_horizon = last.horizon if last is not None else 0
    # Every transaction below xmin has finished: its rows, if committed, are visible to the
    # statements below (each takes a later snapshot), and no new row with a smaller txid appears.
    xmin = session.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).scalar_one()
    cut = session.execute(text(_HORIZON), {"prev_horizon": prev_horizon, "xmin": xmin, "skip": limit - 1}).scalar()
    horizon = max(cut if cut is not None else xmin, prev_horizon)
    rows = session.execute(
        select(*HASHED_COLUMNS)
        .where(AuditLog.txid >= prev_horizon, AuditLog.txid < horizon)
        .order_by(AuditLog.txid, AuditLog.id)
    ).all()
    if not rows:
        return SealResult(busy=False, sealed=0, batch_id=None, horizon=prev_horizon)
    last_seq = session.scalar(select(func.max(AuditSeal.seq))) or 0
    hashes = leaf_hashes(rows, first_seq=last_seq + 1)
    batch_id = (last.id if last is not None else 0) + 1
    merkle = merkle_root([h.row_hash for h in hashes])
    context = merkle_root([h.context_hash for h in hashes])
    prev_root = last.root if last is not None else None
    root = chained_root(prev_root, merkle, context)
    session.execute(
        insert(AuditSealBatch).values(
            id=batch_id,
            first_seq=hashes[0].seq,
            last_seq=hashes[-1].seq,
            horizon=horizon,
            merkle_root=merkle,
            prev_root=prev_root,
            root=root,
            leaf_version=leaf.LEAF_VERSION,
            context_root=context,
        )
    )
    copy_rows(
        session,
        "audit_seals",
        _SEAL_COLUMNS,
        ([h.seq, h.audit_id, h.row_hash, h.context_hash, batch_id] for h in hashes),
    )
    return SealResult(busy=False, sealed=len(hashes), batch_id=batch_id, horizon=horizon, root=root)


def leaf_hashes(rows: Sequence[Row[Any]], *, first_seq: int) -> list[LeafHashes]:
    """The leaf version 2 hashes of ``rows`` (HASHED_COLUMNS), given the seqs first_seq, first_seq + 1, ..."""
    return [
        LeafHashes(
            seq=seq,
            audit_id=row.id,
            row_hash=leaf.row_hash(
                leaf.record(seq=seq, action=row.action, occurred_at=row.occurred_at, details=row.details)
            ),
            context_hash=leaf.context_hash(
                seq=seq,
                actor_id=row.actor_id,
                entity_type=row.entity_type,
                entity_id=row.entity_id,
                request_id=row.request_id,
            ),
        )
        for seq, row in enumerate(rows, start=first_seq)
    ]


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
