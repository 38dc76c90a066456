"""Leaf versions across migration 0016: batches sealed before it keep version 1 and still verify
(renumbered if their ids had a gap), new ones are version 2, README's check handles both and walks
across them, and a downgrade seals version 2's rows again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from core.audit.proofs import transfer_audit
from core.audit.roots import get_root, latest_root
from core.audit.seal import seal
from core.audit.verify import verify_chain
from core.config import Settings
from core.db import make_engine
from devtools import services
from tests.integration.test_migrations import _alembic
from tests.integration.test_transfer_audit import run_readme_check
from web.schemas import AuditRootOut, TransferAuditOut

pytestmark = pytest.mark.commits  # Alembic in subprocesses, on a scratch database

SCRATCH_DB = "bank_test_audit_leaf_versions"
ROW = (
    "INSERT INTO audit_log (action, entity_type, entity_id, actor_id, request_id, details)"
    " VALUES (:action, 'transfer', :entity, gen_random_uuid(), 'req-1', CAST(:details AS jsonb))"
)

# Batch 4 made by hand as the 0006 function made batches: one row, its version 1 hash.
SEAL_AS_VERSION_1 = """
WITH a AS (SELECT * FROM audit_log WHERE entity_id = :entity),
     last AS (SELECT max(seq) AS seq FROM audit_seals),
     prev AS (SELECT root FROM audit_seal_batches WHERE id = 3),
     h AS (SELECT a.id, last.seq + 1 AS seq,
                  audit_row_hash(last.seq + 1, a.occurred_at, a.actor_id, a.action, a.entity_type, a.entity_id,
                                 a.request_id, a.details, NULL) AS row_hash FROM a, last),
     b AS (INSERT INTO audit_seal_batches (id, first_seq, last_seq, horizon, merkle_root, prev_root, root, leaf_version)
           SELECT 4, h.seq, h.seq, (SELECT max(txid) + 1 FROM audit_log), audit_merkle_root(ARRAY[h.row_hash]),
                  prev.root, audit_batch_root(prev.root, audit_merkle_root(ARRAY[h.row_hash])), 1 FROM h, prev
           RETURNING id)
INSERT INTO audit_seals (seq, audit_id, prev_hash, row_hash, batch_id)
SELECT h.seq, h.id, NULL, h.row_hash, b.id FROM h, b
"""


@pytest.fixture
def scratch(stack) -> Iterator[tuple[str, Engine]]:  # type: ignore[no-untyped-def]
    url = services.recreate_database(stack, SCRATCH_DB)
    engine = make_engine(Settings(database_url=url), pool_size=2)
    try:
        yield url, engine
    finally:
        engine.dispose()
        admin = make_url(stack.database_url).set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')


def _write(engine: Engine, entity: str, *actions: str) -> None:
    with engine.begin() as conn:
        for i, action in enumerate(actions):
            conn.execute(text(ROW), {"action": action, "entity": entity, "details": json.dumps({"amount": 100 + i})})


def _as_client_sees(engine: Engine, entity: str) -> tuple[dict[str, Any], Any]:
    """The JSON of GET /transfers/{id}/audit and a fetch of /audit/roots/..., from the same code."""
    with Session(engine) as s:
        audit = json.loads(json.dumps(TransferAuditOut().dump(transfer_audit(s, uuid.UUID(entity)))))

    def fetch(path: str) -> Any:
        with Session(engine) as s:
            n = path.rsplit("/", 1)[1]
            root = latest_root(s) if n == "latest" else get_root(s, int(n))
            return json.loads(json.dumps(AuditRootOut().dump(root)))

    return audit, fetch


def test_version_1_batches_verify_beside_version_2_ones_and_readme_checks_both(scratch) -> None:  # type: ignore[no-untyped-def]
    url, engine = scratch
    entity = str(uuid.uuid4())
    _alembic(url, "upgrade", "0015")
    _write(engine, entity, "transfer.requested", "transfer.completed")
    seal_0006 = text("SELECT o_sealed FROM audit_seal_batch(100)")  # the sealer before 0016
    with engine.begin() as conn:
        assert conn.execute(seal_0006).scalar_one() == 2
    _write(engine, str(uuid.uuid4()), "other.row")
    with engine.connect() as conn:  # a sealing transaction that rolls back leaves a gap in the ids
        assert conn.execute(seal_0006).scalar_one() == 1
        conn.rollback()
    with engine.begin() as conn:
        assert conn.execute(seal_0006).scalar_one() == 1
        assert conn.execute(text("SELECT array_agg(id ORDER BY id) FROM audit_seal_batches")).scalar_one() == [1, 3]

    _alembic(url, "upgrade", "head")  # renumbers the batches: n has no gaps
    _write(engine, entity, "refund.requested")
    _write(engine, str(uuid.uuid4()), "other.row")
    with Session(engine) as s, s.begin():
        sealed = seal(s)
    assert (sealed.sealed, sealed.batch_id) == (2, 3)
    with Session(engine) as s:
        assert s.execute(text("SELECT array_agg(id ORDER BY id) FROM audit_seal_batches")).scalar_one() == [1, 2, 3]
        result = verify_chain(s)
        assert (result.ok, result.rows_checked, result.batches_checked) == (True, 5, 3), result.reason

    audit, fetch = _as_client_sees(engine, entity)
    assert [fetch(f"/audit/roots/{i['sealed_batch']}")["leaf_version"] for i in audit["items"]] == [1, 1, 2]
    assert [i["sealed_batch"] for i in audit["items"]] == [1, 1, 3]
    assert run_readme_check(audit, fetch)["n"] == 3  # walked 1 -> 2 -> 3
    # Version 1: a client checks the proof and the links, not the content (README says so).
    v1, v2 = audit["items"][1], audit["items"][2]
    v1_forged = {**v1, "details": {"amount": 1}}
    run_readme_check({**audit, "items": [v1_forged]}, fetch)
    v1_bad_proof = {**v1, "proof": [{**v1["proof"][0], "sibling": "ab" * 32}]}
    with pytest.raises(AssertionError):
        run_readme_check({**audit, "items": [v1_bad_proof]}, fetch)
    with pytest.raises(AssertionError):  # version 2: the content is checked
        run_readme_check({**audit, "items": [{**v2, "details": {"amount": 1}}]}, fetch)

    # A batch sealed in version 1 form after version 2 ones (its content unchecked by a client):
    # verify-audit refuses it, and so does README's check of a row in it.
    forged = str(uuid.uuid4())
    _write(engine, forged, "transfer.completed")
    with engine.begin() as conn:
        conn.execute(text(SEAL_AS_VERSION_1), {"entity": forged})
    with Session(engine) as s:
        assert "leaf version 1 after 2" in (verify_chain(s).reason or "")
    audit, fetch = _as_client_sees(engine, forged)
    assert fetch(f"/audit/roots/{audit['items'][0]['sealed_batch']}")["leaf_version"] == 1
    with pytest.raises(AssertionError, match="version 1 after version 2"):
        run_readme_check(audit, fetch)
    with engine.begin() as conn:  # gone again, for the downgrade below
        for table in ("audit_seals", "audit_seal_batches"):
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        conn.execute(text("DELETE FROM audit_seals WHERE batch_id = 4"))
        conn.execute(text("DELETE FROM audit_seal_batches WHERE id = 4"))
        for table in ("audit_seals", "audit_seal_batches"):
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))

    # Downgrade: the version 2 batch goes, its rows are sealed again by the 0006 function.
    _alembic(url, "downgrade", "0015")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_seal_batches")).scalar_one() == 2
        assert conn.execute(seal_0006).scalar_one() == 3  # with the row of the forged batch
    _alembic(url, "upgrade", "head")
    with Session(engine) as s:
        result = verify_chain(s)
        assert (result.ok, result.rows_checked, result.batches_checked) == (True, 6, 3), result.reason
