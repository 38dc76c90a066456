"""The chained batch roots a client walks: ``GET /audit/roots/{n}`` and ``/audit/roots/latest``.

``n`` is the batch's id; ids follow each other with no gap, and each root commits to
``previous_root`` (core/audit/merkle.py), so from the root its proof leads to a client reaches
the newest one by fetching n + 1, n + 2, ... and checking each link. Roots are not secret: an
auditor keeps copies (of the latest, at least) to compare with what the server says later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import AuditSealBatch


@dataclass(frozen=True)
class Root:
    n: int
    root: str
    previous_root: str | None  # None for the first batch (its chain starts from 32 zero bytes)
    sealed_at: datetime
    leaf_version: int
    merkle_root: str  # with context_root (version 2), what root is made of besides previous_root
    context_root: str | None


def root_of(batch: AuditSealBatch) -> Root:
    return Root(
        n=batch.id,
        root=batch.root,
        previous_root=batch.prev_root,
        sealed_at=batch.sealed_at,
        leaf_version=batch.leaf_version,
        merkle_root=batch.merkle_root,
        context_root=batch.context_root,
    )


def latest_root(session: Session) -> Root | None:
    """The newest batch's root, None before the first batch is sealed."""
    batch = session.scalar(select(AuditSealBatch).order_by(AuditSealBatch.id.desc()).limit(1))
    return root_of(batch) if batch is not None else None


_BIGINT_MAX = 2**63 - 1


def get_root(session: Session, n: int) -> Root:
    # An n past the column's range names no batch (Postgres would refuse to compare it: a 500).
    batch = session.get(AuditSealBatch, n) if 0 < n <= _BIGINT_MAX else None
    if batch is None:
        raise NotFound(f"no sealed batch {n}")
    return root_of(batch)
