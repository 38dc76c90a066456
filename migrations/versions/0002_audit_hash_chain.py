"""audit hash chain

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:10:00

Each audit row gets seq (its place in the chain, in commit order), prev_hash and
row_hash = sha256(content, prev_hash), set by a BEFORE INSERT trigger under a
transaction-level advisory lock so concurrent transactions chain one after another.
audit_row_hash() is shared by the trigger and by `flask --app web verify-audit`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Arbitrary constant key for pg_advisory_xact_lock: "audit chain".
CHAIN_LOCK = 7_201_004


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("row_hash", sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f("uq_audit_log_seq"), "audit_log", ["seq"])
    op.execute(
        """
        CREATE FUNCTION audit_row_hash(
            seq bigint, occurred_at timestamptz, actor_id uuid, action text, entity_type text,
            entity_id text, request_id text, details jsonb, prev_hash text
        ) RETURNS text LANGUAGE sql IMMUTABLE AS $$
            SELECT encode(sha256(convert_to(concat_ws('|',
                seq::text,
                (extract(epoch FROM occurred_at) * 1000000)::bigint::text,
                coalesce(actor_id::text, ''), action, entity_type,
                coalesce(entity_id, ''), coalesce(request_id, ''),
                details::text, coalesce(prev_hash, '')
            ), 'UTF8')), 'hex')
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            last_seq bigint;
            last_hash text;
        BEGIN
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
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
    )
    op.execute(
        "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain()"
    )
    # Rows written before the chain existed are sealed now, in id order.
    op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    op.execute(
        """
        DO $$
        DECLARE r record; prev text := NULL; n bigint := 0;
        BEGIN
            FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
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


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_chain ON audit_log")
    op.execute("DROP FUNCTION audit_log_chain()")
    op.execute("DROP FUNCTION audit_row_hash(bigint, timestamptz, uuid, text, text, text, text, jsonb, text)")
    op.drop_constraint(op.f("uq_audit_log_seq"), "audit_log", type_="unique")
    op.drop_column("audit_log", "row_hash")
    op.drop_column("audit_log", "prev_hash")
    op.drop_column("audit_log", "seq")
