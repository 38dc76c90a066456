"""Verifying the audit hash chain that the database trigger builds (migration 0002)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

_ROWS = """
SELECT id, seq, prev_hash, row_hash,
       audit_row_hash(seq, occurred_at, actor_id, action, entity_type, entity_id,
                      request_id, details, prev_hash) AS expected
  FROM audit_log WHERE seq > :after ORDER BY seq LIMIT :batch
"""


@dataclass(frozen=True)
class ChainResult:
    rows_checked: int
    broken_at_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at_seq is None


def _rows(session: Session, batch: int = 5000) -> Iterator[tuple[int, int, str | None, str, str]]:
    after = 0
    while True:
        rows = session.execute(text(_ROWS), {"after": after, "batch": batch}).all()
        if not rows:
            return
        yield from ((r.id, r.seq, r.prev_hash, r.row_hash, r.expected) for r in rows)
        after = rows[-1].seq


def verify_chain(session: Session) -> ChainResult:
    """Walk the chain in seq order; report the first row whose content or link was altered."""
    count, prev_seq, prev_hash = 0, 0, None
    for row_id, seq, link, stored, expected in _rows(session):
        count += 1
        if seq != prev_seq + 1:
            return ChainResult(count, seq, f"row(s) before seq {seq} missing (previous seq {prev_seq})")
        if link != prev_hash:
            return ChainResult(count, seq, f"row id {row_id}: prev_hash does not match the previous row")
        if stored != expected:
            return ChainResult(count, seq, f"row id {row_id}: content does not match its hash")
        prev_seq, prev_hash = seq, stored
    return ChainResult(count)
