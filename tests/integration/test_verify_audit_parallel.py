"""verify-audit proved by several processes (issue 28 item 3: a full pass at 10M transfers in
5 minutes): each a chunk of the seqs, in the snapshot of the command's transaction. Whatever is
tampered with, the result (the first break, its seq and reason, the rows and batches counted) is
the one-process walk's; the tampering is committed (other sessions must see it), then undone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit.verify import ChainResult, verify_chain
from tests.factories import seal_all, sealer_paused

pytestmark = pytest.mark.commits


def _verify(sessions: sessionmaker[Session], workers: int) -> ChainResult:
    with sessions() as s:
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return verify_chain(s, workers=workers, min_share=1)


def _both(sessions: sessionmaker[Session]) -> tuple[ChainResult, ChainResult]:
    return _verify(sessions, 1), _verify(sessions, 3)


def _same(one: ChainResult, many: ChainResult) -> None:
    assert many.processes == 3 and one.processes == 1
    fields = ("rows_checked", "broken_at_seq", "reason", "batches_checked", "last_batch_id", "last_root", "last_seq")
    assert {f: getattr(many, f) for f in fields} == {f: getattr(one, f) for f in fields}


@contextmanager
def _committed(sessions: sessionmaker[Session], do: list[str], undo: list[str], **params: object) -> Iterator[None]:
    """``do`` committed with the append-only triggers off, ``undo`` afterwards; no sealer
    chains onto the tampered chain meanwhile."""
    tables = ("audit_log", "audit_seals", "audit_seal_batches")

    def run(statements: list[str]) -> None:
        with sessions.begin() as s:
            for table in tables:
                s.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
            for statement in statements:
                s.execute(text(statement), params)
            for table in tables:
                s.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))

    with sealer_paused(sessions):
        run(do)
        try:
            yield
        finally:
            run(undo)


@pytest.fixture
def chain(sessions: sessionmaker[Session]) -> list[int]:
    """Nine more batches of four rows or more (one with a float and non-ASCII text, which take
    rfc8785 itself): the first seq of each."""
    seal_all(sessions)
    firsts = []
    for i in range(9):
        with sessions.begin() as s:
            for j in range(4):
                details = {"i": i, "j": j, "note": "é" if j == 1 else "plain", "share": 0.5 if j == 2 else 1}
                audit.record(
                    s, action="test.parallel", entity_type="test", entity_id=f"{i}-{j}", actor_id=None, details=details
                )
        seal_all(sessions)
        with sessions() as s:
            firsts.append(s.execute(text("SELECT max(first_seq) FROM audit_seal_batches")).scalar_one())
    return firsts


def test_an_intact_chain_is_intact_in_every_chunk(sessions, chain) -> None:  # type: ignore[no-untyped-def]
    one, many = _both(sessions)
    assert one.ok and one.last_seq == chain[-1] + 3
    _same(one, many)


@pytest.mark.parametrize("where", [2, 5, 8])  # a batch in each chunk of three
def test_an_altered_row_is_found_at_the_same_seq(sessions, chain, where) -> None:  # type: ignore[no-untyped-def]
    seq = chain[where] + 2
    target = "id = (SELECT audit_id FROM audit_seals WHERE seq = :seq)"
    with _committed(
        sessions,
        [f"UPDATE audit_log SET details = details || '{{\"tampered\": 1}}' WHERE {target}"],
        [f"UPDATE audit_log SET details = details - 'tampered' WHERE {target}"],
        seq=seq,
    ):
        one, many = _both(sessions)
    assert (one.broken_at_seq, "content does not match" in (one.reason or "")) == (seq, True)
    _same(one, many)


def test_a_deleted_seal_and_a_broken_root_are_found_as_one_walk_finds_them(sessions, chain) -> None:  # type: ignore[no-untyped-def]
    seq = chain[4] + 3  # the last seal of a batch: the chunk boundary may fall right after it
    with _committed(
        sessions,
        [
            "CREATE TABLE _saved_seal AS SELECT * FROM audit_seals WHERE seq = :seq",
            "DELETE FROM audit_seals WHERE seq = :seq",
        ],
        ["INSERT INTO audit_seals SELECT * FROM _saved_seal", "DROP TABLE _saved_seal"],
        seq=seq,
    ):
        one, many = _both(sessions)
    assert not one.ok
    _same(one, many)
    batch = f"(SELECT batch_id FROM audit_seals WHERE seq = {chain[7]})"
    with _committed(
        sessions,
        [f"UPDATE audit_seal_batches SET root = repeat('0', 64) WHERE id = {batch}"],
        [f"UPDATE audit_seal_batches SET root = :root WHERE id = {batch}"],
        root=_root(sessions, chain[7]),
    ):
        one, many = _both(sessions)
    assert "root does not chain" in (one.reason or "")
    _same(one, many)


def test_a_row_below_the_horizon_without_a_seal_is_found(sessions, chain) -> None:  # type: ignore[no-untyped-def]
    with _committed(
        sessions,
        ["INSERT INTO audit_log (action, entity_type, entity_id, txid) VALUES ('slipped.in', 'test', 'parallel', 1)"],
        ["DELETE FROM audit_log WHERE action = 'slipped.in' AND entity_id = 'parallel'"],
    ):
        one, many = _both(sessions)
    assert "below the sealed horizon" in (one.reason or "")
    _same(one, many)


def _root(sessions: sessionmaker[Session], seq: int) -> str:
    with sessions() as s:
        return s.execute(
            text("SELECT b.root FROM audit_seal_batches b JOIN audit_seals s ON s.batch_id = b.id WHERE s.seq = :seq"),
            {"seq": seq},
        ).scalar_one()


def test_the_transaction_holding_the_snapshot_outlives_the_chunks(sessions, chain) -> None:  # type: ignore[no-untyped-def]
    """The chunks' processes take seconds to start; meanwhile the command's transaction, which
    holds the snapshot, must not be ended by the app's idle-in-transaction timeout (60 s: a
    bigger book's chunks take longer than that)."""
    with sessions() as s:
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        s.execute(text("SELECT set_config('idle_in_transaction_session_timeout', '1500', true)"))
        result = verify_chain(s, workers=2, min_share=1)
        assert s.execute(text("SELECT 1")).scalar_one() == 1
    assert result.ok and result.processes == 2
