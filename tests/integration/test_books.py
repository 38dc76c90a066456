"""Reconciliation and the audit hash chain: pass on honest data, point at tampering."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from core.audit.verify import verify_chain
from core.models import Account, AuditSeal
from core.reconcile import reconcile
from tests.factories import fund, seal_all
from tests.integration.conftest import SmallBook

# The CLI checks run in a subprocess, and the sealer chains only committed transactions. Each test
# checks a small book of its own (``small_book``): a whole-book or whole-chain pass over the run's
# database would take longer the more the suite committed before it.
pytestmark = pytest.mark.commits


def test_reconcile_passes_then_reports_a_tampered_balance(small_book: SmallBook) -> None:
    c = small_book.customer()
    fund(small_book.sessions, small_book.admin, c.account, 700)
    ok = small_book.cli("reconcile")
    assert ok.returncode == 0, ok.stderr
    assert "0 problem(s)" in ok.stdout
    with small_book.sessions.begin() as s:  # a change that bypasses the ledger
        s.execute(text("UPDATE accounts SET balance = balance + 1 WHERE id = :id"), {"id": c.account.id})
    # As an operator runs it (a subprocess: its exit status and stderr); the book is dropped after the
    # test, so the change may stay.
    bad = small_book.run("reconcile")
    assert bad.returncode == 1
    assert f"account {c.account.id}: balance 701 != ledger sum 700" in bad.stderr
    assert "currency" not in bad.stderr  # the ledger itself still balances


def test_reconcile_spots_a_missing_ledger_leg(small_book: SmallBook) -> None:
    c = small_book.customer()
    fund(small_book.sessions, small_book.admin, c.account, 5)
    with small_book.sessions.begin() as s:
        assert reconcile(s).ok
        s.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        s.execute(
            text(
                "UPDATE ledger_entries SET amount = amount * 2, balance_after = balance_after * 2 WHERE account_id = :a"
            ),
            {"a": c.account.id},
        )
        s.get_one(Account, c.account.id).balance = 10
        s.flush()
        problems = reconcile(s).problems
        s.rollback()
    assert any("USD: ledger sums to 5" in p for p in problems)
    assert any("entries, debit -5, credit 10" in p for p in problems)


def _sealed(s, count: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The audit id and seq of the count-th last sealed row."""
    return s.execute(select(AuditSeal.audit_id, AuditSeal.seq).order_by(AuditSeal.seq.desc()).limit(count)).all()[-1]


def test_audit_chain_verifies_and_finds_the_first_altered_row(small_book: SmallBook) -> None:
    small_book.customer()
    seal_all(small_book.sessions)
    ok = small_book.cli("verify-audit")
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact" in ok.stdout
    assert "0 unsealed" in ok.stdout
    with small_book.sessions.begin() as s:
        assert verify_chain(s).ok
        victim_id, victim_seq = _sealed(s, 3)
        # Only someone with DDL rights can even try: the trigger blocks the app.
        s.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        s.execute(text("UPDATE audit_log SET details = '{\"amount\": 1}' WHERE id = :id"), {"id": victim_id})
        result = verify_chain(s)
        s.rollback()
    assert not result.ok
    assert result.broken_at_seq == victim_seq
    assert "content does not match" in (result.reason or "")


def test_verify_audit_exits_1_on_a_broken_chain_only(small_book: SmallBook) -> None:
    small_book.customer()
    seal_all(small_book.sessions)
    with small_book.sessions() as writer:  # an open writer holds the horizon back
        writer.execute(text("SELECT pg_current_xact_id()"))
        small_book.customer()  # committed after it: not sealable yet, reported, not an error
        ok = small_book.cli("verify-audit")
        writer.rollback()
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact" in ok.stdout
    assert " 0 unsealed" not in ok.stdout
    # A seal's hash rewritten and committed: the book is this test's own (no background sealer works
    # on it, and it is dropped afterwards), so the change stays.
    with small_book.sessions.begin() as s:
        s.execute(text("ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only"))
        victim_seq = _sealed(s, 1)[1]
        s.execute(text("UPDATE audit_seals SET row_hash = repeat('0', 64) WHERE seq = :seq"), {"seq": victim_seq})
        s.execute(text("ALTER TABLE audit_seals ENABLE TRIGGER audit_seals_append_only"))
    bad = small_book.run("verify-audit")  # as an operator runs it: its exit status and stderr
    assert bad.returncode == 1
    assert f"BROKEN at seq {victim_seq}" in bad.stderr


def test_audit_chain_detects_a_deleted_seal(small_book: SmallBook) -> None:
    small_book.customer()
    seal_all(small_book.sessions)
    with small_book.sessions.begin() as s:
        _, victim_seq = _sealed(s, 2)
        s.execute(text("ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only"))
        s.execute(text("DELETE FROM audit_seals WHERE seq = :seq"), {"seq": victim_seq})
        result = verify_chain(s)
        s.rollback()
    assert result.broken_at_seq == victim_seq + 1
    assert "missing" in (result.reason or "")
