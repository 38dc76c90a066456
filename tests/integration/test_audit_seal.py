"""The audit sealer: writers never wait for each other, the chain is built after commit in
(txid, id) order, one sealer at a time, and tampering with seals or batches is found."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit.merkle import merkle_root
from core.audit.seal import HASHED_COLUMNS, SealResult, leaf_hashes, seal, unsealed
from core.audit.verify import ChainResult, verify_chain
from core.models import AuditLog, AuditSeal, AuditSealBatch
from core.observability.backlog import measure
from tests.factories import seal_all

# The sealer chains committed transactions by txid; writers race on connections of their own.
pytestmark = pytest.mark.commits


def write(s: Session, action: str = "test.sealer") -> int:
    """Insert one audit row and flush, so the transaction has its id; returns the row id."""
    marker = uuid.uuid4().hex
    audit.record(s, action=action, entity_type="test", entity_id=marker, actor_id=None)
    s.flush()  # the INSERT runs now: the row's txid is this transaction's
    return s.scalars(select(AuditLog.id).where(AuditLog.entity_id == marker)).one()


def seal_of(sessions: sessionmaker[Session], audit_id: int) -> AuditSeal | None:
    with sessions() as s:
        return s.scalar(select(AuditSeal).where(AuditSeal.audit_id == audit_id))


def test_writers_do_not_wait_for_each_other(sessions) -> None:  # type: ignore[no-untyped-def]
    """With the 0002 trigger, B blocked on the chain lock until A committed: here B fails fast if so."""
    with sessions.begin() as a:
        a_id = write(a)  # A holds its row, uncommitted
        done: dict[str, object] = {}

        def writer_b() -> None:
            try:
                with sessions.begin() as b:
                    b.execute(text("SET LOCAL lock_timeout = '2s'"))
                    done["id"] = write(b)
            except Exception as exc:  # surfaced by the assertion below
                done["error"] = exc

        thread = threading.Thread(target=writer_b)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "writer B is waiting for writer A"
        assert "error" not in done, done.get("error")
        with sessions() as other:  # B committed while A is still open
            assert other.get(AuditLog, done["id"]) is not None
            assert other.get(AuditLog, a_id) is None


def test_an_open_transaction_holds_back_later_rows_until_it_commits(sessions) -> None:  # type: ignore[no-untyped-def]
    seal_all(sessions)
    with sessions.begin() as a:
        early = write(a)  # lower txid, still open
        with sessions.begin() as b:
            late = write(b)
        with sessions.begin() as c:
            c_txid = c.scalar(select(AuditLog.txid).where(AuditLog.id == late))
            a_txid = a.scalar(select(AuditLog.txid).where(AuditLog.id == early))
            assert a_txid is not None and c_txid is not None and a_txid < c_txid
        assert seal_all(sessions) == 0  # B's row waits behind A's open transaction
        assert seal_of(sessions, late) is None
        with sessions() as s:
            pending = unsealed(s, datetime.now(UTC))
            assert pending.rows >= 1
    assert seal_all(sessions) >= 2
    first, second = seal_of(sessions, early), seal_of(sessions, late)
    assert first is not None and second is not None
    assert first.seq < second.seq  # txid order, not id or commit order
    assert_txid_order(sessions)
    with sessions() as s:
        assert unsealed(s, datetime.now(UTC)).rows == 0
        assert verify_chain(s).ok


def test_an_aborted_transaction_leaves_no_hole(sessions) -> None:  # type: ignore[no-untyped-def]
    seal_all(sessions)
    with sessions.begin() as a:
        write(a)
        with sessions.begin() as b:
            kept = write(b)
        a.rollback()
    seal_all(sessions)
    assert seal_of(sessions, kept) is not None
    with sessions() as s:
        assert verify_chain(s).ok


def assert_txid_order(sessions: sessionmaker[Session]) -> None:
    """No sealed row comes after a row of a later transaction."""
    with sessions() as s:
        inversions = s.scalar(
            text(
                "SELECT count(*) FROM (SELECT a.txid, lag(a.txid) OVER (ORDER BY s.seq) AS before"
                " FROM audit_seals s JOIN audit_log a ON a.id = s.audit_id) x WHERE x.txid < x.before"
            )
        )
    assert inversions == 0


def test_a_batch_is_limited_but_never_splits_a_transaction(sessions) -> None:  # type: ignore[no-untyped-def]
    seal_all(sessions)
    with sessions.begin() as s:
        ids = [write(s) for _ in range(3)]
    with sessions.begin() as s:
        later = write(s)
    with sessions.begin() as s:
        first = seal(s, limit=2)
    assert (first.busy, first.sealed) == (False, 3)  # all of the first transaction, not 2
    with sessions() as s:
        batch = s.get_one(AuditSealBatch, first.batch_id)
        leaves = list(
            s.scalars(select(AuditSeal.row_hash).where(AuditSeal.batch_id == batch.id).order_by(AuditSeal.seq))
        )
        assert merkle_root(leaves) == batch.merkle_root  # SQL and Python trees agree
        assert s.scalar(select(func.count()).where(AuditSeal.audit_id.in_(ids))) == 3
    assert seal_of(sessions, later) is None
    with sessions.begin() as s:
        assert seal(s, limit=2).sealed == 1
    assert seal_of(sessions, later) is not None


def test_a_second_sealer_is_busy_and_does_nothing(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        write(s)
    with sessions.begin() as first:
        assert not seal(first).busy
        with sessions.begin() as second:
            assert seal(second) == SealResult(busy=True)


def test_concurrent_sealers_and_writers_never_duplicate_or_skip_a_seq(sessions) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(sealer: bool) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(25):
                with sessions.begin() as s:
                    if sealer:
                        seal(s, limit=7)
                    else:
                        write(s)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    seal_all(sessions)
    with sessions() as s:
        count, low, high, distinct = s.execute(
            select(
                func.count(),
                func.min(AuditSeal.seq),
                func.max(AuditSeal.seq),
                func.count(AuditSeal.audit_id.distinct()),
            )
        ).one()
        assert (low, high, distinct) == (1, count, count)
        assert s.scalar(select(func.count()).select_from(AuditLog)) == count
        result = verify_chain(s)
        assert result.ok, result.reason
        assert result.rows_checked == count and result.unsealed_rows == 0
    assert_txid_order(sessions)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_seals SET row_hash = repeat('0', 64)",
        "DELETE FROM audit_seals",
        "TRUNCATE audit_seals",
        "UPDATE audit_seal_batches SET root = repeat('0', 64)",
        "DELETE FROM audit_seal_batches",
        "TRUNCATE audit_seal_batches CASCADE",
    ],
)
def test_seal_tables_are_append_only(sessions, statement) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        write(s)
    seal_all(sessions)
    with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as s:
        s.execute(text(statement))


LAST_BATCH = "(SELECT max(id) FROM audit_seal_batches)"


def tampered(sessions: sessionmaker[Session], *statements: str, rehash: bool = False) -> tuple[ChainResult, int]:
    """Apply statements with the append-only triggers off (then, with ``rehash``, recompute the
    last seal's hashes from its row), verify, roll everything back."""
    with sessions.begin() as s:
        write(s)
    seal_all(sessions)
    with sessions.begin() as s:
        last = s.scalar(select(func.max(AuditSeal.seq)))
        assert last is not None
        for table in ("audit_log", "audit_seals", "audit_seal_batches"):
            s.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        for statement in statements:
            s.execute(text(statement), {"last": last})
        if rehash:
            _rehash_last(s, last)
        result = verify_chain(s)
        s.rollback()
    return result, last


def test_verify_finds_an_altered_merkle_root(sessions) -> None:  # type: ignore[no-untyped-def]
    result, _ = tampered(
        sessions, f"UPDATE audit_seal_batches SET merkle_root = repeat('0', 64) WHERE id = {LAST_BATCH}"
    )
    assert not result.ok
    assert "Merkle root" in (result.reason or "")


def test_verify_finds_a_broken_root_chain(sessions) -> None:  # type: ignore[no-untyped-def]
    result, _ = tampered(sessions, f"UPDATE audit_seal_batches SET root = repeat('0', 64) WHERE id = {LAST_BATCH}")
    assert "root does not chain" in (result.reason or "")


def test_verify_finds_the_last_seal_deleted(sessions) -> None:  # type: ignore[no-untyped-def]
    result, last = tampered(sessions, "DELETE FROM audit_seals WHERE seq = :last")
    assert result.broken_at_seq == last


def _rehash_last(s: Session, last: int) -> None:
    """Recompute the last seal's row and context hashes from its (altered) audit row."""
    row = s.execute(
        select(*HASHED_COLUMNS).join(AuditSeal, AuditSeal.audit_id == AuditLog.id).where(AuditSeal.seq == last)
    ).one()
    hashes = leaf_hashes([row], first_seq=last)[0]
    s.execute(
        text("UPDATE audit_seals SET row_hash = :row, context_hash = :context WHERE seq = :seq"),
        {"row": hashes.row_hash, "context": hashes.context_hash, "seq": last},
    )


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ("action = 'tampered'", "Merkle root does not match"),
        ("details = '{\"amount\": 1}'", "Merkle root does not match"),
        ("occurred_at = occurred_at + interval '1 microsecond'", "Merkle root does not match"),
        # What the API does not show is bound to the batch's root all the same.
        ("actor_id = gen_random_uuid()", "context root does not match"),
        ("entity_id = 'someone-else'", "context root does not match"),
        ("request_id = 'forged'", "context root does not match"),
    ],
)
def test_verify_finds_a_rehashed_row(sessions, change, found) -> None:  # type: ignore[no-untyped-def]
    """A row changed with its hashes recomputed: its batch's roots no longer match; changed alone,
    its hashes no longer match it."""
    result, last = tampered(
        sessions, f"UPDATE audit_log SET {change} WHERE id = (SELECT audit_id FROM audit_seals WHERE seq = :last)"
    )
    assert (result.broken_at_seq, result.reason) == (
        last,
        f"row id {_audit_id(sessions, last)}: content does not match its hash",
    )
    result, _ = tampered(
        sessions,
        f"UPDATE audit_log SET {change} WHERE id = (SELECT audit_id FROM audit_seals WHERE seq = :last)",
        rehash=True,
    )
    assert found in (result.reason or "")


def _audit_id(sessions: sessionmaker[Session], seq: int) -> int:
    with sessions() as s:
        return s.scalars(select(AuditSeal.audit_id).where(AuditSeal.seq == seq)).one()


def test_new_batches_are_leaf_version_2_and_numbered_without_gaps(sessions) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        with sessions.begin() as s:
            write(s)
        seal_all(sessions)
    with sessions() as s:
        batches = s.scalars(select(AuditSealBatch).order_by(AuditSealBatch.id.desc()).limit(3)).all()
    assert [b.id for b in batches] == [batches[0].id, batches[0].id - 1, batches[0].id - 2]
    assert all(b.leaf_version == 2 and b.context_root is not None for b in batches)
    assert [b.prev_root for b in batches[:2]] == [b.root for b in batches[1:]]


def test_verify_refuses_a_version_1_batch_after_a_version_2_one(sessions) -> None:  # type: ignore[no-untyped-def]
    """A batch made to look as if sealed the old way (its content then unchecked by clients) is found."""
    result, _ = tampered(
        sessions,
        f"UPDATE audit_seal_batches SET leaf_version = 1, context_root = NULL,"
        f" root = audit_batch_root(prev_root, merkle_root) WHERE id = {LAST_BATCH}",
    )
    assert "leaf version 1 after 2" in (result.reason or "")


def test_verify_finds_a_row_below_the_horizon_without_a_seal(sessions) -> None:  # type: ignore[no-untyped-def]
    result, _ = tampered(
        sessions,
        "INSERT INTO audit_log (action, entity_type, txid) VALUES ('slipped.in', 'test', 1)",
    )
    assert "below the sealed horizon" in (result.reason or "")


def test_backlog_reports_unsealed_rows_and_their_age(sessions) -> None:  # type: ignore[no-untyped-def]
    seal_all(sessions)
    with sessions() as s:
        backlog = measure(s, datetime.now(UTC))
        assert (backlog.unsealed_audit_rows, backlog.oldest_unsealed_audit_age_seconds) == (0, 0.0)
    with sessions.begin() as s:
        write(s)
    with sessions() as s:
        backlog = measure(s, datetime.now(UTC))
        assert backlog.unsealed_audit_rows == 1
        assert backlog.oldest_unsealed_audit_age_seconds >= 0
    seal_all(sessions)


# Rows whose text forms are the awkward ones: floats Postgres writes its own way, keys out of
# jsonb's order, non-ASCII and control characters, nesting, a time before 1970 and one with no
# microseconds. The sealer hashes the text Postgres returns; the reference hashes Python values.
_AWKWARD = [
    ({"amount": 1.5, "zz": 1, "aaa": [1e-07, 2.0, -0.0, 123.456e5]}, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (
        {"naïve": "é\U0001f600", "\U0001f600": {"b": None, "a": True}, "": ""},
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ),
    (
        {"ctl": 'a"b\\c\nd\te\x01\x1f\x7f', "n": 2**53 - 1, "neg": -(2**53) + 1},
        datetime(2026, 12, 4, 16, 0, tzinfo=UTC),
    ),
    ({}, datetime(2000, 2, 29, 12, 0, 0, 1, tzinfo=UTC)),
]


def test_the_sealers_hashes_are_the_leaf_reference(sessions) -> None:  # type: ignore[no-untyped-def]
    """seal() hashes the rows' text (leaf.row_digest, context_digest): byte for byte what
    leaf_hashes makes from the ORM's values, the reference a client's recomputation follows."""
    seal_all(sessions)
    ids = []
    with sessions.begin() as s:
        for i, (details, occurred_at) in enumerate(_AWKWARD):
            row = AuditLog(
                occurred_at=occurred_at,
                actor_id=uuid.uuid4() if i % 2 else None,
                action=f"test.awkward.{i}é",
                entity_type="test",
                entity_id=None if i == 3 else f'"quoted"\n{i}',
                request_id=None if i % 2 else f"req\\{i}\U0001f600",
                details=details,
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
    assert seal_all(sessions) >= len(ids)
    with sessions() as s:
        for audit_id in ids:
            seal_row = s.scalars(select(AuditSeal).where(AuditSeal.audit_id == audit_id)).one()
            row = s.execute(select(*HASHED_COLUMNS).where(AuditLog.id == audit_id)).one()
            reference = leaf_hashes([row], first_seq=seal_row.seq)[0]
            assert (seal_row.row_hash, seal_row.context_hash) == (reference.row_hash, reference.context_hash)
        assert verify_chain(s).ok
