"""Inclusion proofs of a transfer's audit rows, checkable by a client with SHA-256 alone.

For every sealed row: its ``row_hash``, its batch (Merkle root, previous root, chained root,
leaf index, tree size) and the Merkle audit path from the row to the batch's Merkle root
(core/audit/merkle.py: RFC 6962 hashing, leaf ``sha256(0x00 || row_hash)``, node
``sha256(0x01 || left || right)``). The batch's ``root`` is ``sha256(prev_root || merkle_root)``,
so a root published (or remembered) earlier vouches for every batch before it.

Only what the caller may see leaves: the rows of one transfer the caller can see, with their
action, time and details. ``actor_id`` and ``request_id`` are in the hashed content but not
shown (they may be the other party's); the server-side ``verify-audit`` recomputes every row
hash from the full content.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.merkle import ProofStep, merkle_proof
from core.models import AuditLog, AuditSeal, AuditSealBatch


@dataclass(frozen=True)
class SealedBatch:
    id: int
    merkle_root: str
    prev_root: str | None  # None for the first batch: the chain starts from 32 zero bytes
    root: str
    leaf_index: int
    tree_size: int
    first_seq: int
    last_seq: int
    sealed_at: datetime


@dataclass(frozen=True)
class AuditItem:
    seq: int | None  # None until sealed
    action: str
    occurred_at: datetime
    details: dict[str, Any]
    row_hash: str | None
    prev_hash: str | None
    sealed_batch: SealedBatch | None
    proof: list[ProofStep] | None


@dataclass(frozen=True)
class ChainHead:
    batch_id: int
    root: str
    sealed_at: datetime


@dataclass(frozen=True)
class TransferAudit:
    transfer_id: uuid.UUID
    items: list[AuditItem]
    root: ChainHead | None  # the newest batch: the root to compare with a published one


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
    head = session.scalar(select(AuditSealBatch).order_by(AuditSealBatch.id.desc()).limit(1))
    return TransferAudit(
        transfer_id=transfer_id,
        items=items,
        root=ChainHead(head.id, head.root, head.sealed_at) if head is not None else None,
    )


def _leaves(session: Session, batch_id: int) -> list[str]:
    return list(
        session.scalars(select(AuditSeal.row_hash).where(AuditSeal.batch_id == batch_id).order_by(AuditSeal.seq))
    )


def _item(
    row: AuditLog, seal: AuditSeal | None, batches: dict[int, AuditSealBatch], leaves: dict[int, list[str]]
) -> AuditItem:
    if seal is None:
        return AuditItem(None, row.action, row.occurred_at, row.details, None, None, None, None)
    batch = batches[seal.batch_id]
    index = seal.seq - batch.first_seq
    return AuditItem(
        seq=seal.seq,
        action=row.action,
        occurred_at=row.occurred_at,
        details=row.details,
        row_hash=seal.row_hash,
        prev_hash=seal.prev_hash,
        sealed_batch=SealedBatch(
            id=batch.id,
            merkle_root=batch.merkle_root,
            prev_root=batch.prev_root,
            root=batch.root,
            leaf_index=index,
            tree_size=batch.last_seq - batch.first_seq + 1,
            first_seq=batch.first_seq,
            last_seq=batch.last_seq,
            sealed_at=batch.sealed_at,
        ),
        proof=merkle_proof(leaves[seal.batch_id], index),
    )
