"""Inclusion proofs of a transfer's audit rows, checkable by a client from what it reads.

For every sealed row: the record (``seq``, ``action``, ``occurred_at``, ``details``), its
``row_hash`` (leaf version 2: the SHA-256 of the record's RFC 8785 canonical JSON, which the
client recomputes, core/audit/leaf.py), ``sealed_batch`` (the ``n`` of its batch's root) and
``proof``, the RFC 6962 audit path from the leaf up (core/audit/merkle.py). For version 2 the
proof ends with the two steps that make the batch's ``root`` from its Merkle root (the context
root, the previous root), so it leads to ``GET /audit/roots/{n}``'s ``root`` itself. For
version 1 (rows sealed before migration 0016) it leads to that batch's ``merkle_root``, and the
row hash covers fields not shown: a client checks the proof, only the server the content.

Only what the caller may see leaves: the rows of one transfer the caller can see, with their
action, time and details. The actor, the entity and the request id (they may be the other
party's) are in the context hashes, never shown.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import leaf
from core.audit.merkle import ProofStep, chain_steps, merkle_proof
from core.audit.roots import Root, latest_root
from core.models import AuditLog, AuditSeal, AuditSealBatch


@dataclass(frozen=True)
class AuditItem:
    seq: int | None  # None until sealed
    action: str
    occurred_at: str  # leaf.timestamp(): the text that is hashed
    details: dict[str, Any]
    row_hash: str | None
    sealed_batch: int | None  # the n of the root the proof leads to
    proof: list[ProofStep] | None


@dataclass(frozen=True)
class TransferAudit:
    items: list[AuditItem]
    root: Root | None  # the newest batch's: where a client's walk from its own batch ends


def transfer_audit(session: Session, transfer_id: uuid.UUID) -> TransferAudit:
    """The audit rows of a transfer (the caller checked its visibility), with their proofs."""
    rows = session.execute(
        select(AuditLog, AuditSeal)
        .outerjoin(AuditSeal, AuditSeal.audit_id == AuditLog.id)
        .where(AuditLog.entity_type == "transfer", AuditLog.entity_id == str(transfer_id))
        .order_by(AuditSeal.seq.nulls_last(), AuditLog.id)
    ).all()
    batch_ids = sorted({seal.batch_id for _, seal in rows if seal is not None})
    batches = {b.id: b for b in session.scalars(select(AuditSealBatch).where(AuditSealBatch.id.in_(batch_ids)))}
    leaves = {batch_id: _leaves(session, batch_id) for batch_id in batch_ids}
    items = [_item(row, seal, batches, leaves) for row, seal in rows]
    return TransferAudit(items=items, root=latest_root(session))


def _leaves(session: Session, batch_id: int) -> list[str]:
    return list(
        session.scalars(select(AuditSeal.row_hash).where(AuditSeal.batch_id == batch_id).order_by(AuditSeal.seq))
    )


def _item(
    row: AuditLog, seal: AuditSeal | None, batches: dict[int, AuditSealBatch], leaves: dict[int, list[str]]
) -> AuditItem:
    if seal is None:
        return AuditItem(None, row.action, leaf.timestamp(row.occurred_at), row.details, None, None, None)
    batch = batches[seal.batch_id]
    proof = merkle_proof(leaves[batch.id], seal.seq - batch.first_seq)
    if batch.leaf_version >= 2:
        assert batch.context_root is not None  # a CHECK constraint of version 2 batches
        proof += chain_steps(batch.prev_root, batch.context_root)
    return AuditItem(
        seq=seal.seq,
        action=row.action,
        occurred_at=leaf.timestamp(row.occurred_at),
        details=row.details,
        row_hash=seal.row_hash,
        sealed_batch=batch.id,
        proof=proof,
    )
