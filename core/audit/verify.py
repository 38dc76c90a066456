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

The walk itself (core/audit/walk.py) reads the rows as text tuples on the session's own
connection and hashes them with the C JSON encoder where it writes rfc8785's bytes. With
``workers`` > 1 (the CLI's default is 2) the chain is proved in chunks by processes of their own
in the same snapshot (core/audit/verify_parallel.py); if a chunk is broken, the walk is redone
here from that chunk's start to the end, so the first break reported, its seq and reason, are
exactly the one-process walk's (issue 28: a full pass over ~21M audit rows in 5 minutes on 2
cores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.audit.seal import sealed_horizon, unsealed
from core.audit.verify_parallel import Progress, prove_in_chunks
from core.audit.walk import Batch, Bounds, Broken, Outcome, Start, find_batch, root_of, start_after, walk

__all__ = ["ChainResult", "Progress", "default_workers", "record_checkpoint", "verify_chain"]

# Seals a process is given at least: starting one costs seconds (imports), a few thousand seals less.
MIN_SHARE = 100_000

# Rows below the horizon whose transaction the walk covers: the walk counts the ones it proved
# (each seal a distinct audit row: audit_seals.audit_id is unique); only if the counts differ is
# the row without a seal looked for, by the anti-join.
_ROWS_BELOW = "SELECT count(*) FROM audit_log WHERE txid >= %(from_horizon)s AND txid < %(horizon)s"
_MISSING_SEAL = """
SELECT a.id FROM audit_log a
 WHERE a.txid >= %(from_horizon)s AND a.txid < %(horizon)s
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
    processes: int = 1  # that proved chunks of it (the walk redone here after a broken chunk counts too)

    @property
    def ok(self) -> bool:
        return self.reason is None


def _checkpoint(cur: psycopg.Cursor[Any]) -> Start | None:
    """The last checkpoint, its batch rechecked: still there with the same root, that root made
    from its fields and linked to the batch before. Anything else is reported as a break; only
    a full pass can then say where."""
    mark = cur.execute("SELECT batch_id, root FROM audit_verify_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    if mark is None:
        return None
    batch = find_batch(cur, "id = %(id)s", {"id": mark[0]})
    if batch is None or batch.root != mark[1]:
        raise Broken(None, f"checkpoint: batch {mark[0]} is gone or its root changed; run a full pass")
    if root_of(batch) != batch.root:
        raise Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
    before = cur.execute(
        "SELECT root FROM audit_seal_batches WHERE id < %(id)s ORDER BY id DESC LIMIT 1", {"id": batch.id}
    ).fetchone()
    if batch.prev_root != (before[0] if before else None):
        raise Broken(batch.first_seq, f"batch {batch.id}: prev_root does not match the previous batch's root")
    return start_after(cur, batch)


def verify_chain(
    session: Session,
    now: datetime | None = None,
    *,
    incremental: bool = False,
    progress: Progress | None = None,
    workers: int = 1,
    min_share: int = MIN_SHARE,
) -> ChainResult:
    """Walk the seals in seq order and the batches in id order; report the first alteration.

    ``incremental``: start after the last checkpoint (a full pass when there is none).
    Run it in one REPEATABLE READ transaction so a batch sealed meanwhile is not half seen;
    ``workers`` > 1 then shares that snapshot with up to as many processes (see the module's
    doc), each given ``min_share`` seals at least.
    """
    pending = unsealed(session, now or datetime.now(UTC))
    horizon = sealed_horizon(session)
    conn = session.connection().connection.driver_connection
    assert isinstance(conn, psycopg.Connection)
    started_after: int | None = None
    rows = batches = 0
    with conn.cursor() as cur:
        try:
            after = _checkpoint(cur) if incremental else None
        except Broken as gone:
            return _result(0, 0, gone, None, pending, None)
        start = after or Start(None, None)
        started_after = after.batch_id if after else None
        v1_upto = cur.execute(
            "SELECT coalesce(max(last_seq), 0) FROM audit_seal_batches WHERE leaf_version = 1"
        ).fetchone()[0]  # type: ignore[index]
        bounds = Bounds(v1_upto=v1_upto, from_horizon=start.batch.horizon if start.batch else 0, horizon=horizon)
        total = (cur.execute("SELECT max(seq) FROM audit_seals").fetchone()[0] or 0) - start.seq  # type: ignore[index]
        processes = min(workers, total // max(1, min_share))
        chunks = prove_in_chunks(session, cur, start, bounds, processes, progress) if processes > 1 else None
        below = 0
        outcome: Outcome | None = None
        for chunk_start, chunk in chunks or []:
            if chunk.broken is not None:
                # Walked again from this chunk's start to the end here: the first break exactly as
                # one walk finds it (the chunks before it are intact, so it starts where they end).
                start, outcome = chunk_start, None
                break
            rows, batches, outcome = rows + chunk.rows, batches + chunk.batches, chunk
            below += chunk.below_horizon
        if outcome is None:
            done = rows

            def count(n: int) -> None:
                nonlocal done
                done += n
                if progress is not None:
                    progress(min(done, total), total)

            outcome = walk(cur, start, bounds, count)
            rows, batches, below = rows + outcome.rows, batches + outcome.batches, below + outcome.below_horizon
            if outcome.broken is not None:
                return _result(rows, batches, outcome.broken, None, pending, started_after, len(chunks or ()))
        if progress is not None:
            progress(total, total)
        params = {"from_horizon": bounds.from_horizon, "horizon": horizon}
        if cur.execute(_ROWS_BELOW, params).fetchone()[0] != below:  # type: ignore[index]
            missing = cur.execute(_MISSING_SEAL, params).fetchone()
            if missing is not None:
                unsealed_row = Broken(None, f"audit row id {missing[0]} is below the sealed horizon but has no seal")
                return _result(rows, batches, unsealed_row, None, pending, started_after, len(chunks or ()))
    return _result(rows, batches, None, outcome.last_batch, pending, started_after, len(chunks or ()))


def _result(
    rows: int,
    batches: int,
    broken: Broken | None,
    last: Batch | None,
    pending: Any,
    started_after: int | None,
    processes: int = 0,
) -> ChainResult:
    return ChainResult(
        rows,
        broken.seq if broken else None,
        broken.reason if broken else None,
        batches,
        pending.rows,
        pending.oldest_age_seconds,
        started_after_batch=started_after,
        last_batch_id=last.id if last and not broken else None,
        last_root=last.root if last and not broken else None,
        last_seq=last.last_seq if last and not broken else 0,
        processes=max(1, processes),
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


def default_workers() -> int:
    """Processes a full pass uses by default: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))
