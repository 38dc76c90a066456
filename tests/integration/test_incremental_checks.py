"""Checks that scale (issue 28 item 3): reconcile and verify-audit run under a statement
timeout of their own, not the API's; verify-audit --incremental proves only the batches after
the last intact pass, and tampering is still found by the full pass and by the incremental one."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.audit.verify import ChainResult, record_checkpoint, verify_chain
from core.check_timeout import limit_statement_time
from core.models import AuditSeal, AuditSealBatch
from core.reconcile import reconcile
from tests.factories import fund, seal_all
from tests.integration.conftest import SmallBook
from web.progress import progress_bar

# The CLI checks run in a subprocess, and the sealer chains only committed transactions.
pytestmark = pytest.mark.commits


def test_a_check_sets_its_own_statement_timeout_for_its_transaction_only(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        app_default = s.execute(text("SHOW statement_timeout")).scalar_one()
    with sessions.begin() as s:
        limit_statement_time(s, 0)
        assert s.execute(text("SHOW statement_timeout")).scalar_one() == "0"
        limit_statement_time(s, 2.5)
        assert s.execute(text("SHOW statement_timeout")).scalar_one() == "2500ms"
    with sessions.begin() as s:
        assert s.execute(text("SHOW statement_timeout")).scalar_one() == app_default
    with pytest.raises(ValueError), sessions.begin() as s:
        limit_statement_time(s, -1)


@pytest.mark.parametrize("command", ["reconcile", "verify-audit"])
def test_the_commands_take_a_statement_timeout_of_their_own(small_book: SmallBook, command: str) -> None:
    """The check takes a timeout of its own (0 = none, the default); the one-statement limit it
    replaces in its transaction is shown by the test above. The command runs in this process (Flask's
    CLI runner, the same Click command and option parsing) on a small book of its own: its time does
    not grow with what the suite committed before. tests/integration/test_books.py runs both
    commands as an operator does, in a subprocess."""
    fund(small_book.sessions, small_book.admin, small_book.customer().account, 100)
    seal_all(small_book.sessions)
    for args in ([], ["--statement-timeout", "0"], ["--statement-timeout", "600"]):
        done = small_book.cli(command, *args)
        assert done.returncode == 0, done.stderr
        assert {"reconcile": "0 problem(s)", "verify-audit": "audit chain intact"}[command] in done.stdout
    bad = small_book.cli(command, "--statement-timeout", "-1")
    assert bad.returncode == 2


def _checkpoint_now(sessions: sessionmaker[Session]) -> ChainResult:
    """A full pass, recorded as the checkpoint the next incremental one starts after."""
    with sessions.begin() as s:
        result = verify_chain(s)
        assert result.ok, result.reason
        assert record_checkpoint(s, result, full_pass=True)
    return result


def _tampered(sessions: sessionmaker[Session], statement: str, **params: object) -> tuple[ChainResult, ChainResult]:
    """The full and the incremental pass over a change made with the append-only triggers off, rolled back."""
    with sessions.begin() as s:
        for table in ("audit_log", "audit_seals", "audit_seal_batches"):
            s.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        s.execute(text(statement), params)
        full, incremental = verify_chain(s), verify_chain(s, incremental=True)
        s.rollback()
    return full, incremental


_ALTER_ROW = (
    "UPDATE audit_log SET details = '{\"amount\": 1}' WHERE id = (SELECT audit_id FROM audit_seals WHERE seq = :seq)"
)


def test_incremental_proves_only_new_batches_and_both_passes_find_tampering(small_book: SmallBook) -> None:
    seal_all(small_book.sessions)  # two batches before the checkpoint (the link check below needs one before it)
    small_book.customer()
    seal_all(small_book.sessions)
    mark = _checkpoint_now(small_book.sessions)
    assert mark.last_batch_id is not None and mark.last_seq > 0
    for _ in range(3):  # new rows in new batches after the checkpoint
        small_book.customer()
        seal_all(small_book.sessions)
    with small_book.sessions() as s:
        last_seq = s.scalar(select(func.max(AuditSeal.seq)))
        new_batches = s.scalar(select(func.count()).where(AuditSealBatch.id > mark.last_batch_id))
    assert last_seq is not None and last_seq > mark.last_seq and new_batches

    with small_book.sessions() as s:
        clean = verify_chain(s, incremental=True)
    assert clean.ok, clean.reason
    assert clean.started_after_batch == mark.last_batch_id
    assert (clean.rows_checked, clean.batches_checked) == (last_seq - mark.last_seq, new_batches)

    # An old row, inside the checkpointed region: the full pass finds it; the incremental one
    # does not look there (that is the point of it) and proves the new rows.
    full, incremental = _tampered(small_book.sessions, _ALTER_ROW, seq=mark.last_seq)
    assert not full.ok and full.broken_at_seq == mark.last_seq
    assert "content does not match" in (full.reason or "")
    assert incremental.ok and incremental.rows_checked == last_seq - mark.last_seq

    # A new row: both find it.
    full, incremental = _tampered(small_book.sessions, _ALTER_ROW, seq=last_seq)
    assert (full.broken_at_seq, incremental.broken_at_seq) == (last_seq, last_seq)
    assert "content does not match" in (incremental.reason or "")

    # The checkpoint's own batch rewritten: the incremental pass refuses to start from it.
    full, incremental = _tampered(
        small_book.sessions,
        "UPDATE audit_seal_batches SET root = repeat('0', 64) WHERE id = :id",
        id=mark.last_batch_id,
    )
    assert not full.ok and not incremental.ok
    assert "checkpoint" in (incremental.reason or "")
    # ... and its link to the batch before.
    assert mark.last_batch_id > 1
    full, incremental = _tampered(
        small_book.sessions,
        "UPDATE audit_seal_batches SET root = repeat('0', 64) WHERE id = :id",
        id=mark.last_batch_id - 1,
    )
    assert not full.ok and not incremental.ok
    assert "prev_root does not match" in (incremental.reason or "")


def test_incremental_without_a_checkpoint_is_a_full_pass(small_book: SmallBook) -> None:
    small_book.customer()
    seal_all(small_book.sessions)
    with small_book.sessions.begin() as s:
        s.execute(text("ALTER TABLE audit_verify_checkpoints RENAME TO audit_verify_checkpoints_kept"))
        s.execute(text("CREATE TABLE audit_verify_checkpoints (LIKE audit_verify_checkpoints_kept INCLUDING ALL)"))
        full, incremental = verify_chain(s), verify_chain(s, incremental=True)
        s.rollback()
    assert full.ok and incremental.ok
    assert incremental.started_after_batch is None
    assert incremental.rows_checked == full.rows_checked


def test_verify_audit_cli_records_a_checkpoint_and_goes_on_from_it(small_book: SmallBook) -> None:
    small_book.customer()
    seal_all(small_book.sessions)
    full = small_book.cli("verify-audit")
    assert full.returncode == 0, full.stderr
    assert "from seq 1" in full.stdout
    with small_book.sessions() as s:
        mark = s.execute(
            text("SELECT batch_id, full_pass FROM audit_verify_checkpoints ORDER BY id DESC LIMIT 1")
        ).one()
        assert mark.full_pass
        assert mark.batch_id == s.scalar(select(func.max(AuditSealBatch.id)))
    small_book.customer()
    seal_all(small_book.sessions)
    more = small_book.cli("verify-audit", "--incremental")
    assert more.returncode == 0, more.stderr
    assert f"after batch {mark.batch_id}" in more.stdout
    with small_book.sessions() as s:
        latest = s.execute(
            text("SELECT batch_id, full_pass FROM audit_verify_checkpoints ORDER BY id DESC LIMIT 1")
        ).one()
    assert latest.batch_id > mark.batch_id and not latest.full_pass


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_checks_report_their_progress(small_book: SmallBook) -> None:
    fund(small_book.sessions, small_book.admin, small_book.customer().account, 100)
    seal_all(small_book.sessions)
    seen: list[tuple[int, int]] = []
    with small_book.sessions() as s:
        result = verify_chain(s, progress=lambda done, total: seen.append((done, total)))
    assert result.ok and seen and seen[-1] == (result.rows_checked, result.rows_checked)
    steps: list[tuple[int, int]] = []
    with small_book.sessions() as s:
        assert reconcile(s, lambda done, total: steps.append((done, total))).ok
    assert steps == [(n, 10) for n in range(1, 11)]


def test_the_bar_is_drawn_on_a_terminal_only() -> None:
    with progress_bar("verify-audit: seals", stream=io.StringIO()) as update:
        assert update is None  # piped or redirected: the output stays plain
    terminal = _Terminal()
    with progress_bar("verify-audit: seals", stream=terminal) as update:
        assert update is not None
        update(3, 10)
    assert "verify-audit: seals" in terminal.getvalue()
