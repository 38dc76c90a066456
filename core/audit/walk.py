"""One walk over the sealed audit chain (core/audit/seal.py): the seals in seq order and the
batches in id order from a given batch, each seal's audit row hashed again and each batch's
Merkle roots and root chain rebuilt, up to the first alteration. verify-audit
(core/audit/verify.py) runs one walk over the whole chain or from its checkpoint, or one per
chunk in processes of their own (core/audit/verify_parallel.py).

Speed (issue 28). The rows come as plain tuples from psycopg on the caller's connection (same
transaction), the timestamp and JSON already as text from Postgres, and are hashed with the
standard library's C JSON encoder where it writes rfc8785's bytes (core/audit/leaf.py
``row_digest``); Merkle trees are built over digests. Every query is a keyset page on seq or id
with index probes per row, so its plan does not depend on the table statistics being fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg

from core.audit.leaf import context_digest, row_digest
from core.audit.merkle import batch_root, chained_root, root_of_digests

# Seals read per query: large pages, few round trips; ~10 MB of tuples at a time.
PAGE = 20_000

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

NO_END = 2**63 - 1


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


class Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(seq, reason)  # both in args: a chunk's process sends it back pickled
        self.seq, self.reason = seq, reason


@dataclass(frozen=True)
class Start:
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
class Bounds:
    """The walk's end (batch ids below ``end_batch``, seqs up to ``until``) and what is asked of
    every walk: version 1 hashes up to ``v1_upto``, rows counted with a txid in the horizons."""

    end_batch: int = NO_END
    until: int = NO_END
    v1_upto: int = 0
    from_horizon: int = 0
    horizon: int = 0


@dataclass(frozen=True)
class Outcome:
    rows: int
    batches: int
    below_horizon: int  # rows proved with a txid in [from_horizon, horizon)
    broken: Broken | None
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


def find_batch(cur: psycopg.Cursor[Any], condition: str, params: dict[str, Any]) -> Batch | None:
    """The first batch meeting ``condition`` (a constant of this module, values in ``params``)."""
    query = f"SELECT {_BATCH_COLUMNS} FROM audit_seal_batches WHERE {condition} LIMIT 1"  # noqa: S608
    row = cur.execute(query, params).fetchone()
    return Batch(*row) if row else None


class Walk:
    """State of the walk: the previous seal, the current batch and its leaves and contexts."""

    def __init__(self, cur: psycopg.Cursor[Any], start: Start, bounds: Bounds) -> None:
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
                raise Broken(seq, f"seal(s) before seq {seq} missing (previous seq {self.prev_seq})")
            batch = self.batch
            if batch is None or seq > batch.last_seq:
                self.close_batch()
                batch = self.open_batch(seq)
            if batch_id != batch.id:
                raise Broken(seq, f"row id {audit_id}: in batch {batch_id}, its seq is in batch {batch.id}")
            if not present:
                raise Broken(seq, f"row id {audit_id}: sealed but missing from audit_log")
            action, occurred_at, details, actor_id, entity_type, entity_id, request_id, txid, expected_v1 = r[7:]
            if batch.leaf_version == 1:
                if prev_hash != self.prev_hash:
                    raise Broken(seq, f"row id {audit_id}: prev_hash does not match the previous row")
                if expected_v1 is None:
                    expected_v1 = self.cur.execute(_EXPECTED_V1, {"seq": seq}).fetchone()[0]  # type: ignore[index]
                if row_hash != expected_v1:
                    raise Broken(seq, f"row id {audit_id}: content does not match its hash")
                self.leaves.append(bytes.fromhex(row_hash))
            else:
                leaf = row_digest(seq=seq, action=action, occurred_at=occurred_at, details=details)
                context = context_digest(
                    seq=seq, actor_id=actor_id, entity_type=entity_type, entity_id=entity_id, request_id=request_id
                )
                if leaf.hex() != row_hash or context.hex() != context_hash or prev_hash is not None:
                    raise Broken(seq, f"row id {audit_id}: content does not match its hash")
                self.leaves.append(leaf)
                self.contexts.append(context)
            if low <= txid < high:
                self.below_horizon += 1
            self.prev_seq, self.prev_hash = seq, row_hash

    def open_batch(self, seq: int) -> Batch:
        batch = next(self.batches, None)
        if batch is None:
            raise Broken(seq, f"seq {seq} belongs to no seal batch")
        if batch.first_seq != seq:
            raise Broken(seq, f"batch {batch.id} starts at seq {batch.first_seq}, expected {seq}")
        if batch.prev_root != self.prev_root:
            raise Broken(seq, f"batch {batch.id}: prev_root does not match the previous batch's root")
        if batch.horizon < self.prev_horizon:
            raise Broken(seq, f"batch {batch.id}: horizon {batch.horizon} below the previous one")
        if batch.leaf_version < self.prev_version:
            raise Broken(seq, f"batch {batch.id}: leaf version {batch.leaf_version} after {self.prev_version}")
        self.batch, self.leaves, self.contexts = batch, [], []
        return batch

    def close_batch(self) -> None:
        batch = self.batch
        if batch is None:
            return
        if len(self.leaves) != batch.last_seq - batch.first_seq + 1:
            raise Broken(self.prev_seq + 1, f"batch {batch.id}: seals up to seq {batch.last_seq} missing")
        if root_of_digests(self.leaves).hex() != batch.merkle_root:
            raise Broken(batch.first_seq, f"batch {batch.id}: Merkle root does not match its row hashes")
        if batch.leaf_version != 1 and (
            batch.context_root is None or root_of_digests(self.contexts).hex() != batch.context_root
        ):
            raise Broken(batch.first_seq, f"batch {batch.id}: context root does not match its context hashes")
        if root_of(batch) != batch.root:
            raise Broken(batch.first_seq, f"batch {batch.id}: root does not chain prev_root and merkle_root")
        self.prev_root, self.prev_horizon, self.prev_version = batch.root, batch.horizon, batch.leaf_version
        self.batches_checked += 1
        self.last_batch, self.batch = batch, None
        self.leaves, self.contexts = [], []

    def finish(self) -> None:
        """The last batch closed, and no batch left (up to the walk's end) without its seals."""
        self.close_batch()
        extra = next(self.batches, None)
        if extra is not None:
            raise Broken(extra.first_seq, f"batch {extra.id}: its seals from seq {extra.first_seq} are missing")


def root_of(batch: Batch) -> str | None:
    """The root the batch's own fields chain to (None: a version 2 batch without a context root)."""
    if batch.leaf_version == 1:
        return batch_root(batch.prev_root, batch.merkle_root)
    if batch.context_root is None:
        return None
    return chained_root(batch.prev_root, batch.merkle_root, batch.context_root)


def start_after(cur: psycopg.Cursor[Any], batch: Batch) -> Start:
    row = cur.execute("SELECT row_hash FROM audit_seals WHERE seq = %(seq)s", {"seq": batch.last_seq}).fetchone()
    return Start(batch, row[0] if row else None)


def walk(cur: psycopg.Cursor[Any], start: Start, bounds: Bounds, counter: Callable[[int], None] | None) -> Outcome:
    walk = Walk(cur, start, bounds)
    broken = None
    try:
        walk.run(counter)
    except Broken as exc:
        broken = exc
    return Outcome(walk.rows, walk.batches_checked, walk.below_horizon, broken, walk.last_batch)
