"""Verifying the audit hash chain that the sealer builds (core/audit/seal.py).

Checks every seal in seq order (seq contiguous from 1, the audit row's content matches its
hashes, and for leaf version 1 the prev_hash links), every batch (contiguous seq ranges, the
Merkle roots of its row and context hashes, the root chain, versions never going back) and that
no audit row below the last horizon lacks a seal. Rows above the horizon are not sealed yet:
normal, only counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from core.audit.merkle import batch_root, chained_root, merkle_root
from core.audit.seal import leaf_hashes, sealed_horizon, unsealed
from core.models import AuditSealBatch

# Version 1 hashes are made in SQL (migration 0002); version 2 ones in Python from the row.
_SEALS = """
SELECT s.seq, s.audit_id, s.prev_hash, s.row_hash, s.context_hash, s.batch_id, a.id IS NOT NULL AS present,
       a.id, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id, a.request_id, a.details,
       CASE WHEN b.leaf_version = 1 THEN
           audit_row_hash(s.seq, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id,
                          a.request_id, a.details, s.prev_hash)
       END AS expected_v1
  FROM audit_seals s LEFT JOIN audit_log a ON a.id = s.audit_id
       LEFT JOIN audit_seal_batches b ON b.id = s.batch_id
 WHERE s.seq > :after ORDER BY s.seq LIMIT :batch
"""

_MISSING_SEAL = """
SELECT a.id FROM audit_log a
 WHERE a.txid < :horizon AND NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.audit_id = a.id)
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

    @property
    def ok(self) -> bool:
        return self.reason is None


class _Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def _seals(session: Session, page: int = 5000) -> Iterator[Row[Any]]:
    after = 0
    while True:
        rows = session.execute(text(_SEALS), {"after": after, "batch": page}).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def _batches(session: Session, page: int = 1000) -> Iterator[AuditSealBatch]:
    after = 0
    while True:
        stmt = select(AuditSealBatch).where(AuditSealBatch.id > after).order_by(AuditSealBatch.id).limit(page)
        rows = list(session.scalars(stmt))
        if not rows:
            return
        yield from rows
        after = rows[-1].id


class _Walk:
    """State of the walk: the previous seal, the current batch and its leaves and contexts."""

    def __init__(self, batches: Iterator[AuditSealBatch]) -> None:
        self.batches = batches
        self.rows = 0
        self.batches_checked = 0
        self.prev_seq = 0
        self.prev_hash: str | None = None
        self.prev_root: str | None = None
        self.prev_horizon = 0
        self.prev_version = 1
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
        if batch.leaf_version == 1:
            root = batch_root(batch.prev_root, batch.merkle_root)
        elif batch.context_root is None or merkle_root(self.contexts) != batch.context_root:
            raise _Broken(batch.first_seq, f"batch {batch.id}: context root does not match its context hashes")
        else:
            root = chained_root(batch.prev_root, batch.merkle_root, batch.context_root)
        if root != batch.root:
            raise _Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
        self.prev_root, self.prev_horizon, self.prev_version = batch.root, batch.horizon, batch.leaf_version
        self.batches_checked += 1
        self.batch = None

    def finish(self) -> None:
        self.close_batch()
        extra = next(self.batches, None)
        if extra is not None:
            raise _Broken(extra.first_seq, f"batch {extra.id}: its seals from seq {extra.first_seq} are missing")


def verify_chain(session: Session, now: datetime | None = None) -> ChainResult:
    """Walk the seals in seq order and the batches in id order; report the first alteration.

    Run it in one REPEATABLE READ transaction so a batch sealed meanwhile is not half seen.
    """
    walk = _Walk(_batches(session))
    pending = unsealed(session, now or datetime.now(UTC))
    try:
        for row in _seals(session):
            walk.seal(row)
        walk.finish()
        missing = session.execute(text(_MISSING_SEAL), {"horizon": sealed_horizon(session)}).scalar()
        if missing is not None:
            raise _Broken(None, f"audit row id {missing} is below the sealed horizon but has no seal")
    except _Broken as broken:
        return ChainResult(
            walk.rows, broken.seq, broken.reason, walk.batches_checked, pending.rows, pending.oldest_age_seconds
        )
    return ChainResult(walk.rows, None, None, walk.batches_checked, pending.rows, pending.oldest_age_seconds)
