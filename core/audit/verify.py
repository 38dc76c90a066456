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

Speed (issue 28: a full pass over ~21M audit rows in 5 minutes on 2 cores). The rows come as
plain tuples from psycopg on the session's own connection (same transaction), the timestamp and
JSON already as text from Postgres, and are hashed with the standard library's C JSON encoder
where it writes rfc8785's bytes (core/audit/leaf.py ``row_digest``); Merkle trees are built over
digests. With ``workers`` > 1 (the CLI's default is 2) the seq range is cut at batch boundaries
into that many chunks, each proved by a process of its own in the same snapshot
(``pg_export_snapshot``), as an incremental pass from the batch before its first: every chunk
intact means the whole walk is. If a chunk is broken, the walk is redone in this process from
that chunk's start to the end, so the first break reported, its seq and reason, are exactly the
one-process walk's.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.audit.leaf import context_digest, row_digest
from core.audit.merkle import batch_root, chained_root, root_of_digests
from core.audit.seal import sealed_horizon, unsealed

# Seals read per query: large pages, few round trips; ~10 MB of tuples at a time.
PAGE = 20_000
# Seals a process is given at least: starting one costs seconds (imports), a few thousand seals less.
MIN_SHARE = 100_000

# The page is materialised first and each audit row found by its key (LIMIT 1 keeps the lateral
# join from being flattened into a join the planner might choose from stale statistics), so a
# page costs its size whatever the planner believes about the tables. Version 1 hashes are made
# in SQL (migration 0002), only for seqs up to the last version 1 batch's; version 2 ones in
# Python from the text forms Postgres writes here (the timestamp as ``leaf.timestamp`` writes it).
_SEALS = """
WITH page AS MATERIALIZED (
    SELECT seq, audit_id, prev_hash, row_hash, context_hash, batch_id FROM audit_seals
     WHERE seq > %(after)s AND seq <= %(until)s ORDER BY seq LIMIT %(page)s
)
SELECT p.seq, p.audit_id, p.prev_hash, p.row_hash, p.context_hash, p.batch_id, a.id IS NOT NULL AS present,
       a.action, to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       a.details::text, a.actor_id::text, a.entity_type, a.entity_id, a.request_id, a.txid,
       CASE WHEN p.seq <= %(v1_upto)s THEN
           audit_row_hash(p.seq, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id,
                          a.request_id, a.details, p.prev_hash)
       END AS expected_v1
  FROM page p
  LEFT JOIN LATERAL (SELECT l.id, l.occurred_at, l.actor_id, l.action, l.entity_type, l.entity_id, l.request_id,
                            l.details, l.txid
                       FROM audit_log l WHERE l.id = p.audit_id LIMIT 1) a ON true
 ORDER BY p.seq
"""

# A version 1 row past v1_upto (only if batches were altered): its expected hash on its own.
_EXPECTED_V1 = """
SELECT audit_row_hash(s.seq, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id,
                      a.request_id, a.details, s.prev_hash)
  FROM audit_seals s JOIN audit_log a ON a.id = s.audit_id WHERE s.seq = %(seq)s
"""

_BATCH_COLUMNS = "id, first_seq, last_seq, horizon, merkle_root, prev_root, root, leaf_version, context_root"

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

_NO_END = 2**63 - 1


class Batch(NamedTuple):
    id: int
    first_seq: int
    last_seq: int
    horizon: int
    merkle_root: str
    prev_root: str | None
    root: str
    leaf_version: int
    context_root: str | None


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


class _Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(seq, reason)  # both in args: a chunk's process sends it back pickled
        self.seq, self.reason = seq, reason


# Called now and then during the walk: (seals checked so far, seals to check in all).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Start:
    """Where a walk begins: after ``batch`` (None: from seq 1), whose last seal's row_hash a
    following version 1 row links to."""

    batch: Batch | None
    last_row_hash: str | None

    @property
    def seq(self) -> int:
        return self.batch.last_seq if self.batch else 0

    @property
    def batch_id(self) -> int:
        return self.batch.id if self.batch else 0


@dataclass(frozen=True)
class _Bounds:
    """The walk's end (batch ids below ``end_batch``, seqs up to ``until``) and what is asked of
    every walk: version 1 hashes up to ``v1_upto``, rows counted with a txid in the horizons."""

    end_batch: int = _NO_END
    until: int = _NO_END
    v1_upto: int = 0
    from_horizon: int = 0
    horizon: int = 0


@dataclass(frozen=True)
class _Outcome:
    rows: int
    batches: int
    below_horizon: int  # rows proved with a txid in [from_horizon, horizon)
    broken: _Broken | None
    last_batch: Batch | None


def _batches(cur: psycopg.Cursor[Any], after: int, before: int, page: int = 1000) -> Iterator[Batch]:
    while True:
        rows = cur.execute(
            f"SELECT {_BATCH_COLUMNS} FROM audit_seal_batches WHERE id > %(after)s AND id < %(before)s"  # noqa: S608
            " ORDER BY id LIMIT %(page)s",
            {"after": after, "before": before, "page": page},
        ).fetchall()
        if not rows:
            return
        yield from (Batch(*row) for row in rows)
        after = rows[-1][0]


def _batch(cur: psycopg.Cursor[Any], condition: str, params: dict[str, Any]) -> Batch | None:
    """The first batch meeting ``condition`` (a constant of this module, values in ``params``)."""
    query = f"SELECT {_BATCH_COLUMNS} FROM audit_seal_batches WHERE {condition} LIMIT 1"  # noqa: S608
    row = cur.execute(query, params).fetchone()
    return Batch(*row) if row else None


class _Walk:
    """State of the walk: the previous seal, the current batch and its leaves and contexts."""

    def __init__(self, cur: psycopg.Cursor[Any], start: _Start, bounds: _Bounds) -> None:
        self.cur, self.bounds = cur, bounds
        self.batches = _batches(cur, start.batch_id, bounds.end_batch)
        self.rows = 0
        self.batches_checked = 0
        self.below_horizon = 0
        after = start.batch
        self.prev_seq = start.seq
        self.prev_hash: str | None = start.last_row_hash
        self.prev_root: str | None = after.root if after else None
        self.prev_horizon = after.horizon if after else 0
        self.prev_version = after.leaf_version if after else 1
        self.last_batch: Batch | None = after
        self.batch: Batch | None = None
        self.leaves: list[bytes] = []
        self.contexts: list[bytes] = []

    def run(self, counter: Callable[[int], None] | None = None) -> None:
        params = {"after": self.prev_seq, "until": self.bounds.until, "page": PAGE, "v1_upto": self.bounds.v1_upto}
        while True:
            rows = self.cur.execute(_SEALS, params).fetchall()
            if not rows:
                break
            self.page(rows)
            params["after"] = rows[-1][0]
            if counter is not None:
                counter(len(rows))
        self.finish()

    def page(self, rows: list[tuple[Any, ...]]) -> None:
        low, high = self.bounds.from_horizon, self.bounds.horizon
        for r in rows:
            seq, audit_id, prev_hash, row_hash, context_hash, batch_id, present = r[:7]
            self.rows += 1
            if seq != self.prev_seq + 1:
                raise _Broken(seq, f"seal(s) before seq {seq} missing (previous seq {self.prev_seq})")
            batch = self.batch
            if batch is None or seq > batch.last_seq:
                self.close_batch()
                batch = self.open_batch(seq)
            if batch_id != batch.id:
                raise _Broken(seq, f"row id {audit_id}: in batch {batch_id}, its seq is in batch {batch.id}")
            if not present:
                raise _Broken(seq, f"row id {audit_id}: sealed but missing from audit_log")
            action, occurred_at, details, actor_id, entity_type, entity_id, request_id, txid, expected_v1 = r[7:]
            if batch.leaf_version == 1:
                if prev_hash != self.prev_hash:
                    raise _Broken(seq, f"row id {audit_id}: prev_hash does not match the previous row")
                if expected_v1 is None:
                    expected_v1 = self.cur.execute(_EXPECTED_V1, {"seq": seq}).fetchone()[0]  # type: ignore[index]
                if row_hash != expected_v1:
                    raise _Broken(seq, f"row id {audit_id}: content does not match its hash")
                self.leaves.append(bytes.fromhex(row_hash))
            else:
                leaf = row_digest(seq=seq, action=action, occurred_at=occurred_at, details=details)
                context = context_digest(
                    seq=seq, actor_id=actor_id, entity_type=entity_type, entity_id=entity_id, request_id=request_id
                )
                if leaf.hex() != row_hash or context.hex() != context_hash or prev_hash is not None:
                    raise _Broken(seq, f"row id {audit_id}: content does not match its hash")
                self.leaves.append(leaf)
                self.contexts.append(context)
            if low <= txid < high:
                self.below_horizon += 1
            self.prev_seq, self.prev_hash = seq, row_hash

    def open_batch(self, seq: int) -> Batch:
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
        return batch

    def close_batch(self) -> None:
        batch = self.batch
        if batch is None:
            return
        if len(self.leaves) != batch.last_seq - batch.first_seq + 1:
            raise _Broken(self.prev_seq + 1, f"batch {batch.id}: seals up to seq {batch.last_seq} missing")
        if root_of_digests(self.leaves).hex() != batch.merkle_root:
            raise _Broken(batch.first_seq, f"batch {batch.id}: Merkle root does not match its row hashes")
        if batch.leaf_version != 1 and (
            batch.context_root is None or root_of_digests(self.contexts).hex() != batch.context_root
        ):
            raise _Broken(batch.first_seq, f"batch {batch.id}: context root does not match its context hashes")
        if _root_of(batch) != batch.root:
            raise _Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
        self.prev_root, self.prev_horizon, self.prev_version = batch.root, batch.horizon, batch.leaf_version
        self.batches_checked += 1
        self.last_batch, self.batch = batch, None
        self.leaves, self.contexts = [], []

    def finish(self) -> None:
        """The last batch closed, and no batch left (up to the walk's end) without its seals."""
        self.close_batch()
        extra = next(self.batches, None)
        if extra is not None:
            raise _Broken(extra.first_seq, f"batch {extra.id}: its seals from seq {extra.first_seq} are missing")


def _root_of(batch: Batch) -> str | None:
    """The root the batch's own fields chain to (None: a version 2 batch without a context root)."""
    if batch.leaf_version == 1:
        return batch_root(batch.prev_root, batch.merkle_root)
    if batch.context_root is None:
        return None
    return chained_root(batch.prev_root, batch.merkle_root, batch.context_root)


def _start_after(cur: psycopg.Cursor[Any], batch: Batch) -> _Start:
    row = cur.execute("SELECT row_hash FROM audit_seals WHERE seq = %(seq)s", {"seq": batch.last_seq}).fetchone()
    return _Start(batch, row[0] if row else None)


def _checkpoint(cur: psycopg.Cursor[Any]) -> _Start | None:
    """The last checkpoint, its batch rechecked: still there with the same root, that root made
    from its fields and linked to the batch before. Anything else is reported as a break; only
    a full pass can then say where."""
    mark = cur.execute("SELECT batch_id, root FROM audit_verify_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    if mark is None:
        return None
    batch = _batch(cur, "id = %(id)s", {"id": mark[0]})
    if batch is None or batch.root != mark[1]:
        raise _Broken(None, f"checkpoint: batch {mark[0]} is gone or its root changed; run a full pass")
    if _root_of(batch) != batch.root:
        raise _Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
    before = cur.execute(
        "SELECT root FROM audit_seal_batches WHERE id < %(id)s ORDER BY id DESC LIMIT 1", {"id": batch.id}
    ).fetchone()
    if batch.prev_root != (before[0] if before else None):
        raise _Broken(batch.first_seq, f"batch {batch.id}: prev_root does not match the previous batch's root")
    return _start_after(cur, batch)


def _walk(cur: psycopg.Cursor[Any], start: _Start, bounds: _Bounds, counter: Callable[[int], None] | None) -> _Outcome:
    walk = _Walk(cur, start, bounds)
    broken = None
    try:
        walk.run(counter)
    except _Broken as exc:
        broken = exc
    return _Outcome(walk.rows, walk.batches_checked, walk.below_horizon, broken, walk.last_batch)


# ---- parallel chunks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    conninfo: str
    snapshot: str
    statement_timeout: str
    start: _Start
    bounds: _Bounds


_done: Any = None  # in a chunk's process: the shared count of seals checked


def _init_worker(done: Any) -> None:
    global _done
    _done = done


def _count(n: int) -> None:
    with _done.get_lock():
        _done.value += n


def _prove_chunk(chunk: _Chunk) -> _Outcome:
    """In a process of its own: walk one chunk in the exported snapshot."""
    with psycopg.connect(chunk.conninfo, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{chunk.snapshot}'")  # an id Postgres made: [0-9A-F-]
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (chunk.statement_timeout,))
        with conn.cursor() as cur:
            outcome = _walk(cur, chunk.start, chunk.bounds, _count)
        conn.execute("ROLLBACK")
    return outcome


def _chunk_starts(cur: psycopg.Cursor[Any], start: _Start, last_seq: int, workers: int) -> list[Batch]:
    """The first batch of each chunk after the first: near equal shares of the seqs to prove."""
    firsts: dict[int, Batch] = {}
    span = last_seq - start.seq
    for i in range(1, workers):
        target = start.seq + span * i // workers
        batch = _batch(cur, "first_seq > %(seq)s ORDER BY first_seq", {"seq": target})
        if batch is not None and batch.id > start.batch_id:
            firsts[batch.id] = batch
    return [firsts[k] for k in sorted(firsts)]


def _parallel(
    session: Session, cur: psycopg.Cursor[Any], start: _Start, bounds: _Bounds, workers: int, progress: Progress | None
) -> list[tuple[_Start, _Outcome]] | None:
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
        before = _batch(cur, "id < %(id)s ORDER BY id DESC", {"id": first.id})
        if before is None:
            return None
        starts.append(_start_after(cur, before))
    snapshot = cur.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
    timeout = cur.execute("SELECT current_setting('statement_timeout')").fetchone()[0]  # type: ignore[index]
    url = session.get_bind().engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    chunks = []
    for i, chunk_start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        chunk_bounds = replace(
            bounds,
            end_batch=firsts[i].id if end else _NO_END,
            until=end.seq if end else _NO_END,
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
    return list(zip(starts, outcomes, strict=True))


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
        except _Broken as gone:
            return _result(0, 0, gone, None, pending, None)
        start = after or _Start(None, None)
        started_after = after.batch_id if after else None
        v1_upto = cur.execute(
            "SELECT coalesce(max(last_seq), 0) FROM audit_seal_batches WHERE leaf_version = 1"
        ).fetchone()[0]  # type: ignore[index]
        bounds = _Bounds(v1_upto=v1_upto, from_horizon=start.batch.horizon if start.batch else 0, horizon=horizon)
        total = (cur.execute("SELECT max(seq) FROM audit_seals").fetchone()[0] or 0) - start.seq  # type: ignore[index]
        processes = min(workers, total // max(1, min_share))
        chunks = _parallel(session, cur, start, bounds, processes, progress) if processes > 1 else None
        below = 0
        outcome: _Outcome | None = None
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

            outcome = _walk(cur, start, bounds, count)
            rows, batches, below = rows + outcome.rows, batches + outcome.batches, below + outcome.below_horizon
            if outcome.broken is not None:
                return _result(rows, batches, outcome.broken, None, pending, started_after, len(chunks or ()))
        if progress is not None:
            progress(total, total)
        params = {"from_horizon": bounds.from_horizon, "horizon": horizon}
        if cur.execute(_ROWS_BELOW, params).fetchone()[0] != below:  # type: ignore[index]
            missing = cur.execute(_MISSING_SEAL, params).fetchone()
            if missing is not None:
                unsealed_row = _Broken(None, f"audit row id {missing[0]} is below the sealed horizon but has no seal")
                return _result(rows, batches, unsealed_row, None, pending, started_after, len(chunks or ()))
    return _result(rows, batches, None, outcome.last_batch, pending, started_after, len(chunks or ()))


def _result(
    rows: int,
    batches: int,
    broken: _Broken | None,
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
