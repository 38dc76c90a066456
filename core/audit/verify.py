"""Verifying the audit hash chain that the sealer builds (core/audit/seal.py).

Checks every seal in seq order (seq contiguous from 1, the audit row's content matches its
hashes, and for leaf version 1 the prev_hash links), every batch (contiguous seq ranges, the
Merkle roots of its row and context hashes, the root chain, versions never going back) and that
no audit row below the last horizon lacks a seal. Rows above the horizon are not sealed yet:
normal, only counted.

A full pass proves everything from seq 1. An incremental one starts after the last checkpoint
(audit_verify_checkpoints, written by ``record_checkpoint`` after an intact pass): it rechecks
that batch's root and its link to the batch before, then proves only the later batches. Every
query is a keyset page on seq or id with index probes per row, so its plan does not depend on
the table statistics being fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from core.audit.merkle import batch_root, chained_root, merkle_root
from core.audit.seal import leaf_hashes, sealed_horizon, unsealed
from core.models import AuditSealBatch

# Version 1 hashes are made in SQL (migration 0002); version 2 ones in Python from the row.
# The page is materialised first and each row found by its key (LIMIT 1 keeps the lateral joins
# from being flattened), so a page costs its size whatever the planner believes about the tables.
_SEALS = """
WITH page AS MATERIALIZED (
    SELECT seq, audit_id, prev_hash, row_hash, context_hash, batch_id FROM audit_seals
     WHERE seq > :after ORDER BY seq LIMIT :batch
)
SELECT p.seq, p.audit_id, p.prev_hash, p.row_hash, p.context_hash, p.batch_id, a.id IS NOT NULL AS present,
       a.id, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id, a.request_id, a.details,
       CASE WHEN b.leaf_version = 1 THEN
           audit_row_hash(p.seq, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id,
                          a.request_id, a.details, p.prev_hash)
       END AS expected_v1
  FROM page p
  LEFT JOIN LATERAL (SELECT l.id, l.occurred_at, l.actor_id, l.action, l.entity_type, l.entity_id, l.request_id,
                            l.details
                       FROM audit_log l WHERE l.id = p.audit_id LIMIT 1) a ON true
  LEFT JOIN LATERAL (SELECT sb.leaf_version FROM audit_seal_batches sb WHERE sb.id = p.batch_id LIMIT 1) b ON true
 ORDER BY p.seq
"""

_MISSING_SEAL = """
SELECT a.id FROM audit_log a
 WHERE a.txid >= :from_horizon AND a.txid < :horizon
   AND NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.audit_id = a.id)
 ORDER BY a.id LIMIT 1
"""


@dataclass(frozen=True)
class ChainResult:
    rows_checked: int
    broken_at_seq: int | None = None
    reason: str | None = None
    batches_checked: int = 0
    unsealed_rows: int = 0
    oldest_unsealed_age_seconds: float = 0.0
    # Where the pass began (None: from seq 1) and the last batch it found intact.
    started_after_batch: int | None = None
    last_batch_id: int | None = None
    last_root: str | None = None
    last_seq: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


class _Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


# Called after each page of seals: (seals checked so far, seals to check in all).
Progress = Callable[[int, int], None]


def _seals(session: Session, after: int = 0, page: int = 5000) -> Iterator[Row[Any]]:
    while True:
        rows = session.execute(text(_SEALS), {"after": after, "batch": page}).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def _batches(session: Session, after: int = 0, page: int = 1000) -> Iterator[AuditSealBatch]:
    while True:
        stmt = select(AuditSealBatch).where(AuditSealBatch.id > after).order_by(AuditSealBatch.id).limit(page)
        rows = list(session.scalars(stmt))
        if not rows:
            return
        yield from rows
        after = rows[-1].id


class _Walk:
    """State of the walk: the previous seal, the current batch and its leaves and contexts."""

    def __init__(self, batches: Iterator[AuditSealBatch], after: _Checkpoint | None = None) -> None:
        self.batches = batches
        self.rows = 0
        self.batches_checked = 0
        self.prev_seq = after.batch.last_seq if after else 0
        self.prev_hash: str | None = after.last_row_hash if after else None
        self.prev_root: str | None = after.batch.root if after else None
        self.prev_horizon = after.batch.horizon if after else 0
        self.prev_version = after.batch.leaf_version if after else 1
        self.last_batch: AuditSealBatch | None = after.batch if after else None
        self.batch: AuditSealBatch | None = None
        self.leaves: list[str] = []
        self.contexts: list[str] = []

    def seal(self, r: Row[Any]) -> None:
        self.rows += 1
        if r.seq != self.prev_seq + 1:
            raise _Broken(r.seq, f"seal(s) before seq {r.seq} missing (previous seq {self.prev_seq})")
        if self.batch is None or r.seq > self.batch.last_seq:
            self.close_batch()
            self.open_batch(r.seq)
        assert self.batch is not None
        if r.batch_id != self.batch.id:
            raise _Broken(r.seq, f"row id {r.audit_id}: in batch {r.batch_id}, its seq is in batch {self.batch.id}")
        if not r.present:
            raise _Broken(r.seq, f"row id {r.audit_id}: sealed but missing from audit_log")
        if self.batch.leaf_version == 1:
            self.check_v1(r)
        else:
            self.check_v2(r)
        self.leaves.append(r.row_hash)
        self.prev_seq, self.prev_hash = r.seq, r.row_hash

    def check_v1(self, r: Row[Any]) -> None:
        if r.prev_hash != self.prev_hash:
            raise _Broken(r.seq, f"row id {r.audit_id}: prev_hash does not match the previous row")
        if r.row_hash != r.expected_v1:
            raise _Broken(r.seq, f"row id {r.audit_id}: content does not match its hash")

    def check_v2(self, r: Row[Any]) -> None:
        expected = leaf_hashes([r], first_seq=r.seq)[0]
        if r.row_hash != expected.row_hash or r.context_hash != expected.context_hash or r.prev_hash is not None:
            raise _Broken(r.seq, f"row id {r.audit_id}: content does not match its hash")
        self.contexts.append(r.context_hash)

    def open_batch(self, seq: int) -> None:
        batch = next(self.batches, None)
        if batch is None:
            raise _Broken(seq, f"seq {seq} belongs to no seal batch")
        if batch.first_seq != seq:
            raise _Broken(seq, f"batch {batch.id} starts at seq {batch.first_seq}, expected {seq}")
        if batch.prev_root != self.prev_root:
            raise _Broken(seq, f"batch {batch.id}: prev_root does not match the previous batch's root")
        if batch.horizon < self.prev_horizon:
            raise _Broken(seq, f"batch {batch.id}: horizon {batch.horizon} below the previous one")
        if batch.leaf_version < self.prev_version:
            raise _Broken(seq, f"batch {batch.id}: leaf version {batch.leaf_version} after {self.prev_version}")
        self.batch, self.leaves, self.contexts = batch, [], []

    def close_batch(self) -> None:
        batch = self.batch
        if batch is None:
            return
        if len(self.leaves) != batch.last_seq - batch.first_seq + 1:
            raise _Broken(self.prev_seq + 1, f"batch {batch.id}: seals up to seq {batch.last_seq} missing")
        if merkle_root(self.leaves) != batch.merkle_root:
            raise _Broken(batch.first_seq, f"batch {batch.id}: Merkle root does not match its row hashes")
        if batch.leaf_version != 1 and (batch.context_root is None or merkle_root(self.contexts) != batch.context_root):
            raise _Broken(batch.first_seq, f"batch {batch.id}: context root does not match its context hashes")
        if _root_of(batch) != batch.root:
            raise _Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
        self.prev_root, self.prev_horizon, self.prev_version = batch.root, batch.horizon, batch.leaf_version
        self.batches_checked += 1
        self.last_batch, self.batch = batch, None

    def finish(self) -> None:
        self.close_batch()
        extra = next(self.batches, None)
        if extra is not None:
            raise _Broken(extra.first_seq, f"batch {extra.id}: its seals from seq {extra.first_seq} are missing")


def _root_of(batch: AuditSealBatch) -> str | None:
    """The root the batch's own fields chain to (None: a version 2 batch without a context root)."""
    if batch.leaf_version == 1:
        return batch_root(batch.prev_root, batch.merkle_root)
    if batch.context_root is None:
        return None
    return chained_root(batch.prev_root, batch.merkle_root, batch.context_root)


@dataclass(frozen=True)
class _Checkpoint:
    batch: AuditSealBatch
    last_row_hash: str | None  # the batch's last seal's, which a following version 1 row links to


def _checkpoint(session: Session) -> _Checkpoint | None:
    """The last checkpoint, its batch rechecked: still there with the same root, that root made
    from its fields and linked to the batch before. Anything else is reported as a break; only
    a full pass can then say where."""
    mark = session.execute(
        text("SELECT batch_id, root FROM audit_verify_checkpoints ORDER BY id DESC LIMIT 1")
    ).one_or_none()
    if mark is None:
        return None
    batch = session.get(AuditSealBatch, mark.batch_id)
    if batch is None or batch.root != mark.root:
        raise _Broken(None, f"checkpoint: batch {mark.batch_id} is gone or its root changed; run a full pass")
    if _root_of(batch) != batch.root:
        raise _Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
    before = session.execute(
        text("SELECT root FROM audit_seal_batches WHERE id < :id ORDER BY id DESC LIMIT 1"), {"id": batch.id}
    ).scalar()
    if batch.prev_root != before:
        raise _Broken(batch.first_seq, f"batch {batch.id}: prev_root does not match the previous batch's root")
    last_row_hash = session.execute(
        text("SELECT row_hash FROM audit_seals WHERE seq = :seq"), {"seq": batch.last_seq}
    ).scalar()
    return _Checkpoint(batch, last_row_hash)


def verify_chain(
    session: Session, now: datetime | None = None, *, incremental: bool = False, progress: Progress | None = None
) -> ChainResult:
    """Walk the seals in seq order and the batches in id order; report the first alteration.

    ``incremental``: start after the last checkpoint (a full pass when there is none).
    Run it in one REPEATABLE READ transaction so a batch sealed meanwhile is not half seen.
    """
    pending = unsealed(session, now or datetime.now(UTC))
    walk: _Walk | None = None
    after: _Checkpoint | None = None
    try:
        after = _checkpoint(session) if incremental else None
        start_seq, start_batch = (after.batch.last_seq, after.batch.id) if after else (0, 0)
        walk = _Walk(_batches(session, start_batch), after)
        total = (session.execute(text("SELECT max(seq) FROM audit_seals")).scalar() or 0) - start_seq
        for row in _seals(session, start_seq):
            walk.seal(row)
            if progress is not None and (walk.rows % 5000 == 0 or walk.rows == total):
                progress(walk.rows, total)
        walk.finish()
        from_horizon = after.batch.horizon if after else 0
        missing = session.execute(
            text(_MISSING_SEAL), {"from_horizon": from_horizon, "horizon": sealed_horizon(session)}
        ).scalar()
        if missing is not None:
            raise _Broken(None, f"audit row id {missing} is below the sealed horizon but has no seal")
    except _Broken as broken:
        return ChainResult(
            walk.rows if walk else 0,
            broken.seq,
            broken.reason,
            walk.batches_checked if walk else 0,
            pending.rows,
            pending.oldest_age_seconds,
            started_after_batch=after.batch.id if after else None,
        )
    last = walk.last_batch
    return ChainResult(
        walk.rows,
        None,
        None,
        walk.batches_checked,
        pending.rows,
        pending.oldest_age_seconds,
        started_after_batch=after.batch.id if after else None,
        last_batch_id=last.id if last else None,
        last_root=last.root if last else None,
        last_seq=last.last_seq if last else 0,
    )


def record_checkpoint(session: Session, result: ChainResult, *, full_pass: bool) -> bool:
    """Remember where an intact pass ended, for the next incremental one; False if nothing to record."""
    if not result.ok or result.last_batch_id is None or result.last_root is None:
        return False
    session.execute(
        text(
            "INSERT INTO audit_verify_checkpoints (batch_id, root, last_seq, full_pass)"
            " VALUES (:batch_id, :root, :last_seq, :full_pass)"
        ),
        {
            "batch_id": result.last_batch_id,
            "root": result.last_root,
            "last_seq": result.last_seq,
            "full_pass": full_pass,
        },
    )
    return True
