"""audit leaf version 2: row hashes a client recomputes, the sealer in Python

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 10:00:00

Leaf version 1 (every batch sealed so far): ``row_hash = audit_row_hash(...)`` (0002), over
columns the API does not return, with an ambiguous ``concat_ws('|')`` encoding: a client could
check a proof but not that the record it read is the one that was hashed.

Leaf version 2 (core/audit/leaf.py): ``row_hash`` is the SHA-256 of the RFC 8785 canonical JSON
of the record as GET /transfers/{id}/audit returns it; the columns it does not return are
hashed into ``audit_seals.context_hash``, whose Merkle root (``context_root``) the batch's root
commits to; ``root = node(prev_root, node(merkle_root, context_root))`` (core/audit/merkle.py).
Canonical JSON is not something SQL can write, so the sealer moves to Python
(core/audit/seal.py) and ``audit_seal_batch()`` is dropped; the SQL functions that rebuild and
check version 1 (``audit_row_hash``, ``audit_merkle_root``, ``audit_batch_root``) stay.

Batches already sealed keep version 1 (``leaf_version`` 1, ``context_root`` NULL): they are
append-only and their roots may have been published. Adding the columns rewrites nothing.

A batch's id becomes the ``n`` a client walks (GET /audit/roots/{n}, n + 1, ...), so ids must have
no gaps. The 0006 function drew them from a sequence, which leaves a gap when a sealing
transaction rolls back; if there is one, the batches are renumbered in order (their roots do not
hash their ids, so every root and proof stays as it was). From here on the sealer gives the
last id + 1 under its lock.

Downgrade: the version 2 seals and batches are deleted (their rows become unsealed again) and
the 0006 sealer function comes back, which seals those rows again in version 1. Roots published
from version 2 batches no longer exist after a downgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEAL_TABLES = ("audit_seals", "audit_seal_batches")

# The 0006 sealer, as it was, for the downgrade.
SEAL_BATCH_0006 = """
CREATE FUNCTION audit_seal_batch(p_limit integer)
RETURNS TABLE (o_batch_id bigint, o_sealed integer, o_horizon bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_prev_horizon bigint;
    v_prev_root text;
    v_seq bigint;
    v_hash text;
    v_xmin bigint;
    v_horizon bigint;
    v_first bigint;
    v_ids bigint[] := '{}';
    v_seqs bigint[] := '{}';
    v_prevs text[] := '{}';
    v_hashes text[] := '{}';
    v_merkle text;
    v_batch bigint;
    r record;
BEGIN
    SELECT b.horizon, b.root INTO v_prev_horizon, v_prev_root
      FROM audit_seal_batches b ORDER BY b.id DESC LIMIT 1;
    v_prev_horizon := coalesce(v_prev_horizon, 0);
    SELECT s.seq, s.row_hash INTO v_seq, v_hash FROM audit_seals s ORDER BY s.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0);
    v_xmin := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    SELECT a.txid + 1 INTO v_horizon FROM audit_log a
     WHERE a.txid >= v_prev_horizon AND a.txid < v_xmin
     ORDER BY a.txid, a.id OFFSET greatest(p_limit, 1) - 1 LIMIT 1;
    v_horizon := greatest(coalesce(v_horizon, v_xmin), v_prev_horizon);
    v_first := v_seq + 1;
    FOR r IN SELECT a.* FROM audit_log a
              WHERE a.txid >= v_prev_horizon AND a.txid < v_horizon ORDER BY a.txid, a.id LOOP
        v_seq := v_seq + 1;
        v_prevs := array_append(v_prevs, v_hash);
        v_hash := audit_row_hash(v_seq, r.occurred_at, r.actor_id, r.action, r.entity_type,
                                 r.entity_id, r.request_id, r.details, v_hash);
        v_ids := array_append(v_ids, r.id);
        v_seqs := array_append(v_seqs, v_seq);
        v_hashes := array_append(v_hashes, v_hash);
    END LOOP;
    IF v_seq < v_first THEN
        RETURN QUERY SELECT NULL::bigint, 0, v_prev_horizon;
        RETURN;
    END IF;
    v_merkle := audit_merkle_root(v_hashes);
    INSERT INTO audit_seal_batches (first_seq, last_seq, horizon, merkle_root, prev_root, root)
    VALUES (v_first, v_seq, v_horizon, v_merkle, v_prev_root, audit_batch_root(v_prev_root, v_merkle))
    RETURNING id INTO v_batch;
    INSERT INTO audit_seals (seq, audit_id, prev_hash, row_hash, batch_id)
    SELECT u.seq, u.audit_id, u.prev_hash, u.row_hash, v_batch
      FROM unnest(v_seqs, v_ids, v_prevs, v_hashes) AS u(seq, audit_id, prev_hash, row_hash);
    RETURN QUERY SELECT v_batch, array_length(v_ids, 1), v_horizon;
END
$$
"""


RENUMBER_GAPS = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM audit_seal_batches) x
                    WHERE id <> n) THEN
        RETURN;
    END IF;
    ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only;
    ALTER TABLE audit_seal_batches DISABLE TRIGGER audit_seal_batches_append_only;
    ALTER TABLE audit_seals DROP CONSTRAINT fk_audit_seals_batch_id_audit_seal_batches;
    CREATE TEMPORARY TABLE audit_batch_renumber ON COMMIT DROP AS
        SELECT id AS old_id, row_number() OVER (ORDER BY id) AS new_id FROM audit_seal_batches;
    -- Through negative ids: the primary key is checked row by row.
    UPDATE audit_seal_batches b SET id = -r.new_id FROM audit_batch_renumber r WHERE b.id = r.old_id;
    UPDATE audit_seal_batches SET id = -id;
    UPDATE audit_seals s SET batch_id = r.new_id
      FROM audit_batch_renumber r WHERE s.batch_id = r.old_id AND r.old_id <> r.new_id;
    ALTER TABLE audit_seals ADD CONSTRAINT fk_audit_seals_batch_id_audit_seal_batches
        FOREIGN KEY (batch_id) REFERENCES audit_seal_batches (id);
    ALTER TABLE audit_seal_batches ENABLE TRIGGER audit_seal_batches_append_only;
    ALTER TABLE audit_seals ENABLE TRIGGER audit_seals_append_only;
END
$$
"""


def upgrade() -> None:
    op.execute(RENUMBER_GAPS)
    # Existing batches are version 1; the default goes once they have it (the sealer names it).
    op.add_column(
        "audit_seal_batches", sa.Column("leaf_version", sa.SmallInteger(), server_default="1", nullable=False)
    )
    op.alter_column("audit_seal_batches", "leaf_version", server_default=None)
    op.add_column("audit_seal_batches", sa.Column("context_root", sa.String(length=64), nullable=True))
    op.create_check_constraint(
        op.f("ck_audit_seal_batches_leaf_version"),
        "audit_seal_batches",
        "leaf_version IN (1, 2) AND (leaf_version = 1) = (context_root IS NULL)",
    )
    op.add_column("audit_seals", sa.Column("context_hash", sa.String(length=64), nullable=True))
    op.execute("DROP FUNCTION audit_seal_batch(integer)")


def downgrade() -> None:
    for table in SEAL_TABLES:
        op.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
    op.execute("DELETE FROM audit_seals WHERE batch_id IN (SELECT id FROM audit_seal_batches WHERE leaf_version <> 1)")
    op.execute("DELETE FROM audit_seal_batches WHERE leaf_version <> 1")
    for table in SEAL_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
    # The 0006 sealer draws ids from the sequence; the Python sealer set them itself.
    op.execute(
        "SELECT setval(pg_get_serial_sequence('audit_seal_batches', 'id'),"
        " (SELECT coalesce(max(id), 0) + 1 FROM audit_seal_batches), false)"
    )
    op.execute(SEAL_BATCH_0006)
    op.drop_column("audit_seals", "context_hash")
    op.drop_constraint(op.f("ck_audit_seal_batches_leaf_version"), "audit_seal_batches", type_="check")
    op.drop_column("audit_seal_batches", "context_root")
    op.drop_column("audit_seal_batches", "leaf_version")
