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

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Row, func, insert, select, text
from sqlalchemy.orm import Session

from core.audit import leaf
from core.audit.merkle import chained_root, root_of_digests
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
# The same columns as the text the hashes are made of (leaf.row_digest, leaf.context_digest):
# read as plain tuples, no datetime, dict or UUID made per row (issue 28: the ORM's rows and
# their hashing were three quarters of the sealer's time).
_ROWS = f"""
SELECT id, action, {leaf.TIMESTAMP_SQL}, details::text, actor_id::text, entity_type, entity_id, request_id
  FROM audit_log WHERE txid >= %(prev_horizon)s AND txid < %(horizon)s ORDER BY txid, id
"""  # noqa: S608 (a constant of core/audit/leaf.py)


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
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor() as cur:  # the session's connection: the same transaction
        rows = cur.execute(_ROWS, {"prev_horizon": prev_horizon, "horizon": horizon}).fetchall()
    if not rows:
        return SealResult(busy=False, sealed=0, batch_id=None, horizon=prev_horizon)
    first_seq = (session.scalar(select(func.max(AuditSeal.seq))) or 0) + 1
    row_digests, context_digests = _digests(rows, first_seq)
    batch_id = (last.id if last is not None else 0) + 1
    merkle = root_of_digests(row_digests).hex()
    context = root_of_digests(context_digests).hex()
    prev_root = last.root if last is not None else None
    root = chained_root(prev_root, merkle, context)
    session.execute(
        insert(AuditSealBatch).values(
            id=batch_id,
            first_seq=first_seq,
            last_seq=first_seq + len(rows) - 1,
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
        (
            (seq, row[0], row_digest.hex(), context_digest.hex(), batch_id)
            for seq, row, row_digest, context_digest in zip(
                itertools.count(first_seq), rows, row_digests, context_digests
            )
        ),
    )
    return SealResult(busy=False, sealed=len(rows), batch_id=batch_id, horizon=horizon, root=root)


def _digests(rows: list[tuple[Any, ...]], first_seq: int) -> tuple[list[bytes], list[bytes]]:
    """The row and context digests of ``rows`` (_ROWS' columns) with the seqs first_seq, first_seq + 1, ...:
    the hashes ``leaf_hashes`` makes, from the text forms (tests/integration/test_audit_seal.py)."""
    row_digests, context_digests = [], []
    for seq, (_, action, occurred_at, details, actor_id, entity_type, entity_id, request_id) in enumerate(
        rows, start=first_seq
    ):
        row_digests.append(leaf.row_digest(seq=seq, action=action, occurred_at=occurred_at, details=details))
        context_digests.append(
            leaf.context_digest(
                seq=seq, actor_id=actor_id, entity_type=entity_type, entity_id=entity_id, request_id=request_id
            )
        )
    return row_digests, context_digests


def leaf_hashes(rows: Sequence[Row[Any]], *, first_seq: int) -> list[LeafHashes]:
    """The leaf version 2 hashes of ``rows`` (HASHED_COLUMNS), given the seqs first_seq, first_seq + 1, ...:
    the reference the sealer's faster path (``_digests``) is held to."""
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
