"""audit sealer: the hash chain leaves the insert path

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00

Before: a BEFORE INSERT trigger chained every audit row under pg_advisory_xact_lock, held
until commit, so every transaction that wrote an audit row went single file.

After: writers insert audit rows with no lock; each row records the inserting transaction
(``txid``, xid8 as bigint). One sealer at a time (core/audit_seal.py) chains, in batches,
the rows whose transaction has finished: ``txid`` below the xmin horizon of a fresh snapshot.
Every transaction below that horizon has committed or aborted, so no row can later appear
in front of a sealed one. Rows with ``txid >= the last batch's horizon`` are exactly the
unsealed ones (index on audit_log (txid, id)).

Where the chain lives: in ``audit_seals`` (one row per sealed audit row: seq, prev_hash,
row_hash, batch_id) and ``audit_seal_batches`` (first/last seq, the horizon used, the Merkle
root of the batch's row hashes and ``root = sha256(prev_root || merkle_root)`` chaining the
batches). Keeping seq/prev_hash/row_hash on audit_log would need an UPDATE of every audit row
(refused by the append-only trigger, and a dead tuple per row on the hottest table); the seal
tables are insert-only and append-only by the same trigger function.

Row hash: unchanged, ``audit_row_hash()`` from 0002, so rows chained before this revision still
verify. Merkle tree (``audit_merkle_root()``, mirrored by core/merkle.py): leaf =
sha256(0x00 || row_hash bytes), node = sha256(0x01 || left || right), the last node of a level
with an odd count is carried up unchanged. Hashes are stored as lowercase hex.

Existing rows were chained by the trigger: they get ``txid = 0`` and their seq/prev_hash/row_hash
move to audit_seals as one initial batch with horizon 1 (every later transaction id is >= 3).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TXID_DEFAULT = "(pg_current_xact_id())::text::bigint"
ZERO_ROOT = "0" * 64

MERKLE_ROOT = """
CREATE FUNCTION audit_merkle_root(leaves text[]) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    level bytea[] := '{}';
    next bytea[];
    n integer;
    i integer;
BEGIN
    IF coalesce(array_length(leaves, 1), 0) = 0 THEN
        RAISE EXCEPTION 'audit_merkle_root: no leaves';
    END IF;
    FOR i IN 1 .. array_length(leaves, 1) LOOP
        level := array_append(level, sha256('\\x00'::bytea || decode(leaves[i], 'hex')));
    END LOOP;
    n := array_length(level, 1);
    WHILE n > 1 LOOP
        next := '{}';
        i := 1;
        WHILE i <= n LOOP
            IF i < n THEN
                next := array_append(next, sha256('\\x01'::bytea || level[i] || level[i + 1]));
            ELSE
                next := array_append(next, level[i]);  -- odd node: carried up unchanged
            END IF;
            i := i + 2;
        END LOOP;
        level := next;
        n := array_length(level, 1);
    END LOOP;
    RETURN encode(level[1], 'hex');
END
$$
"""

BATCH_ROOT = f"""
CREATE FUNCTION audit_batch_root(prev_root text, merkle_root text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(decode(coalesce(prev_root, '{ZERO_ROOT}'), 'hex') || decode(merkle_root, 'hex')), 'hex')
$$
"""

# One call seals one batch. The caller holds the sealer's advisory lock (core/audit_seal.py).
SEAL_BATCH = """
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
    -- Every transaction below this has finished: its rows, if committed, are visible from
    -- here on, and no new row with a smaller txid can appear.
    v_xmin := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    -- At most p_limit rows, but never part of one transaction's rows: the horizon is a txid.
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

REJECT_CHANGE_NAMED = """
CREATE OR REPLACE FUNCTION audit_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

REJECT_CHANGE_0001 = """
CREATE OR REPLACE FUNCTION audit_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

CHAIN_0002 = """
CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(7201004);
    SELECT a.seq, a.row_hash INTO last_seq, last_hash
      FROM audit_log a WHERE a.seq IS NOT NULL ORDER BY a.seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := last_hash;
    NEW.row_hash := audit_row_hash(NEW.seq, NEW.occurred_at, NEW.actor_id, NEW.action,
        NEW.entity_type, NEW.entity_id, NEW.request_id, NEW.details, NEW.prev_hash);
    RETURN NEW;
END
$$
"""

SEAL_TABLES = ("audit_seal_batches", "audit_seals")


def upgrade() -> None:
    op.execute("DROP TRIGGER audit_log_chain ON audit_log")
    op.execute("DROP FUNCTION audit_log_chain()")
    # Existing rows get 0 without a table rewrite; new rows the inserting transaction's id.
    op.add_column("audit_log", sa.Column("txid", sa.BigInteger(), server_default="0", nullable=False))
    op.alter_column("audit_log", "txid", server_default=sa.text(TXID_DEFAULT))
    op.create_index("ix_audit_log_txid_id", "audit_log", ["txid", "id"], unique=False)

    op.create_table(
        "audit_seal_batches",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("horizon", sa.BigInteger(), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("prev_root", sa.String(length=64), nullable=True),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("last_seq >= first_seq", name=op.f("ck_audit_seal_batches_seq_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_seal_batches")),
        sa.UniqueConstraint("first_seq", name=op.f("uq_audit_seal_batches_first_seq")),
    )
    op.create_table(
        "audit_seals",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("audit_id", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["audit_id"], ["audit_log.id"], name=op.f("fk_audit_seals_audit_id_audit_log")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["audit_seal_batches.id"], name=op.f("fk_audit_seals_batch_id_audit_seal_batches")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_seals")),
        sa.UniqueConstraint("audit_id", name=op.f("uq_audit_seals_audit_id")),
    )
    op.create_index("ix_audit_seals_batch_id", "audit_seals", ["batch_id"], unique=False)

    op.execute(REJECT_CHANGE_NAMED)
    for table in SEAL_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change()"
        )
    op.execute(MERKLE_ROOT)
    op.execute(BATCH_ROOT)
    op.execute(SEAL_BATCH)

    # The rows the trigger chained become the first batch, horizon 1 (their txid is 0).
    op.execute(
        """
        DO $$
        DECLARE v_merkle text; v_batch bigint;
        BEGIN
            IF EXISTS (SELECT 1 FROM audit_log WHERE seq IS NULL) THEN
                RAISE EXCEPTION 'audit_log has rows without seq: the 0002 chain is incomplete';
            END IF;
            IF NOT EXISTS (SELECT 1 FROM audit_log) THEN
                RETURN;
            END IF;
            SELECT audit_merkle_root(array_agg(row_hash ORDER BY seq)) INTO v_merkle FROM audit_log;
            INSERT INTO audit_seal_batches (first_seq, last_seq, horizon, merkle_root, prev_root, root)
            SELECT min(seq), max(seq), 1, v_merkle, NULL, audit_batch_root(NULL, v_merkle) FROM audit_log
            RETURNING id INTO v_batch;
            INSERT INTO audit_seals (seq, audit_id, prev_hash, row_hash, batch_id)
            SELECT seq, id, prev_hash, row_hash, v_batch FROM audit_log ORDER BY seq;
        END
        $$
        """
    )
    op.drop_constraint(op.f("uq_audit_log_seq"), "audit_log", type_="unique")
    op.drop_column("audit_log", "row_hash")
    op.drop_column("audit_log", "prev_hash")
    op.drop_column("audit_log", "seq")


def downgrade() -> None:
    op.add_column("audit_log", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("row_hash", sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f("uq_audit_log_seq"), "audit_log", ["seq"])
    op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    op.execute(
        """
        UPDATE audit_log a SET seq = s.seq, prev_hash = s.prev_hash, row_hash = s.row_hash
          FROM audit_seals s WHERE s.audit_id = a.id
        """
    )
    # Rows not sealed yet are chained after the last seal, in the sealer's order.
    op.execute(
        """
        DO $$
        DECLARE r record; prev text; n bigint;
        BEGIN
            SELECT s.seq, s.row_hash INTO n, prev FROM audit_seals s ORDER BY s.seq DESC LIMIT 1;
            n := coalesce(n, 0);
            FOR r IN SELECT * FROM audit_log WHERE seq IS NULL ORDER BY txid, id LOOP
                n := n + 1;
                UPDATE audit_log SET seq = n, prev_hash = prev,
                    row_hash = audit_row_hash(n, r.occurred_at, r.actor_id, r.action, r.entity_type,
                        r.entity_id, r.request_id, r.details, prev)
                 WHERE id = r.id RETURNING row_hash INTO prev;
            END LOOP;
        END
        $$
        """
    )
    op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    op.execute(CHAIN_0002)
    op.execute(
        "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain()"
    )
    op.execute("DROP FUNCTION audit_seal_batch(integer)")
    op.execute("DROP FUNCTION audit_batch_root(text, text)")
    op.execute("DROP FUNCTION audit_merkle_root(text[])")
    op.drop_index("ix_audit_seals_batch_id", table_name="audit_seals")
    op.drop_table("audit_seals")  # DROP TABLE is not TRUNCATE: the triggers go with the tables
    op.drop_table("audit_seal_batches")
    op.execute(REJECT_CHANGE_0001)
    op.drop_index("ix_audit_log_txid_id", table_name="audit_log")
    op.drop_column("audit_log", "txid")
