"""verify-audit in processes of its own (issue 28: ~21M audit rows in 5 minutes on 2 cores).

The seq range is cut at batch boundaries into as many chunks as processes, each proved by a
process of its own in the caller's snapshot (``pg_export_snapshot``), as an incremental walk
(core/audit/walk.py) from the batch before its first: every chunk intact means the whole walk
is. verify_chain (core/audit/verify.py) redoes the walk from a broken chunk's start itself, so
the first break it reports is exactly the one-process walk's.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from sqlalchemy.orm import Session

from core.audit.walk import NO_END, Batch, Bounds, Outcome, Start, find_batch, start_after, walk

# Called now and then: (seals checked so far, seals to check in all).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Chunk:
    conninfo: str
    snapshot: str
    statement_timeout: str
    start: Start
    bounds: Bounds


_done: Any = None  # in a chunk's process: the shared count of seals checked
_last_done: Any = None  # in the caller: the last call's counter, kept for processes still starting


def _init_worker(done: Any) -> None:
    global _done
    _done = done


def _count(n: int) -> None:
    with _done.get_lock():
        _done.value += n


def _prove_chunk(chunk: _Chunk) -> Outcome:
    """In a process of its own: walk one chunk in the exported snapshot."""
    with psycopg.connect(chunk.conninfo, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{chunk.snapshot}'")  # an id Postgres made: [0-9A-F-]
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (chunk.statement_timeout,))
        with conn.cursor() as cur:
            outcome = walk(cur, chunk.start, chunk.bounds, _count)
        conn.execute("ROLLBACK")
    return outcome


def _chunk_starts(cur: psycopg.Cursor[Any], start: Start, last_seq: int, workers: int) -> list[Batch]:
    """The first batch of each chunk after the first: near equal shares of the seqs to prove."""
    firsts: dict[int, Batch] = {}
    span = last_seq - start.seq
    for i in range(1, workers):
        target = start.seq + span * i // workers
        batch = find_batch(cur, "first_seq > %(seq)s ORDER BY first_seq", {"seq": target})
        if batch is not None and batch.id > start.batch_id:
            firsts[batch.id] = batch
    return [firsts[k] for k in sorted(firsts)]


def prove_in_chunks(
    session: Session, cur: psycopg.Cursor[Any], start: Start, bounds: Bounds, workers: int, progress: Progress | None
) -> list[tuple[Start, Outcome]] | None:
    """Each chunk's start and outcome, in seq order; None when one process should walk it all:
    a single chunk, or a transaction this one's snapshot cannot be shared from (not REPEATABLE
    READ, or with writes of its own, which other sessions would not see)."""
    last_seq = cur.execute("SELECT coalesce(max(seq), 0) FROM audit_seals").fetchone()[0]  # type: ignore[index]
    firsts = _chunk_starts(cur, start, last_seq, workers)
    isolation, wrote = cur.execute(
        "SELECT current_setting('transaction_isolation'), pg_current_xact_id_if_assigned() IS NOT NULL"
    ).fetchone()  # type: ignore[misc]
    if not firsts or isolation not in ("repeatable read", "serializable") or wrote:
        return None
    starts = [start]
    for first in firsts:
        before = find_batch(cur, "id < %(id)s ORDER BY id DESC", {"id": first.id})
        if before is None:
            return None
        starts.append(start_after(cur, before))
    snapshot = cur.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
    timeout = cur.execute("SELECT current_setting('statement_timeout')").fetchone()[0]  # type: ignore[index]
    url = session.get_bind().engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    chunks = []
    for i, chunk_start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        chunk_bounds = replace(
            bounds,
            end_batch=firsts[i].id if end else NO_END,
            until=end.seq if end else NO_END,
        )
        chunks.append(_Chunk(url, snapshot, timeout, chunk_start, chunk_bounds))
    context = multiprocessing.get_context("spawn")  # a fresh process: no inherited connection
    done = context.Value("q", 0)
    total = last_seq - start.seq
    pool = ProcessPoolExecutor(len(chunks), mp_context=context, initializer=_init_worker, initargs=(done,))
    try:
        futures = [pool.submit(_prove_chunk, chunk) for chunk in chunks]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            # This transaction holds the snapshot and must outlive the chunks: a statement now
            # and then keeps the app's idle-in-transaction timeout from ending it.
            cur.execute("SELECT 1")
            if progress is not None:
                progress(min(done.value, total), total)
        outcomes = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # the processes end on their own: no idle wait here
        # A process the pool was still starting rebuilds ``done`` from its name when it comes up;
        # were the counter collected now, its semaphore would be gone and that start would fail.
        global _last_done
        _last_done = done
    return list(zip(starts, outcomes, strict=True))
