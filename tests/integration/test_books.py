"""Reconciliation and the audit hash chain: pass on honest data, point at tampering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from core.audit.verify import verify_chain
from core.models import Account, AuditSeal
from core.reconcile import reconcile
from tests.factories import fund, seal_all, sealer_paused

# The CLI checks run in a subprocess, and the sealer chains only committed transactions.
pytestmark = pytest.mark.commits

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).parent / "flask")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLASK, "--app", "web", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_reconcile_passes_then_reports_a_tampered_balance(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    fund(sessions, admin_user, c.account, 700)
    ok = cli("reconcile")
    assert ok.returncode == 0, ok.stderr
    assert "0 problem(s)" in ok.stdout
    with sessions.begin() as s:  # a change that bypasses the ledger
        s.execute(text("UPDATE accounts SET balance = balance + 1 WHERE id = :id"), {"id": c.account.id})
    try:
        bad = cli("reconcile")
        assert bad.returncode == 1
        assert f"account {c.account.id}: balance 701 != ledger sum 700" in bad.stderr
        assert "currency" not in bad.stderr  # the ledger itself still balances
    finally:
        with sessions.begin() as s:
            s.execute(text("UPDATE accounts SET balance = balance - 1 WHERE id = :id"), {"id": c.account.id})


def test_reconcile_spots_a_missing_ledger_leg(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    fund(sessions, admin_user, c.account, 5)
    with sessions.begin() as s:
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


def test_audit_chain_verifies_and_finds_the_first_altered_row(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    make_customer()
    seal_all(sessions)
    ok = cli("verify-audit")
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact" in ok.stdout
    assert "0 unsealed" in ok.stdout
    with sessions.begin() as s:
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


def test_verify_audit_exits_1_on_a_broken_chain_only(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    make_customer()
    seal_all(sessions)
    with sessions() as writer:  # an open writer holds the horizon back (a background sealer may run)
        writer.execute(text("SELECT pg_current_xact_id()"))
        make_customer()  # committed after it: not sealable yet, reported, not an error
        ok = cli("verify-audit")
        writer.rollback()
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact" in ok.stdout
    assert " 0 unsealed" not in ok.stdout
    # Tampering with committed seals: keep the e2e tier's background sealer from chaining onto them.
    with sealer_paused(sessions):
        victim_seq = 0
        with sessions.begin() as s:  # a seal's hash rewritten, committed, then put back
            s.execute(text("ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only"))
            victim_seq = _sealed(s, 1)[1]
            genuine = s.scalar(text("SELECT row_hash FROM audit_seals WHERE seq = :seq"), {"seq": victim_seq})
            s.execute(text("UPDATE audit_seals SET row_hash = repeat('0', 64) WHERE seq = :seq"), {"seq": victim_seq})
            s.execute(text("ALTER TABLE audit_seals ENABLE TRIGGER audit_seals_append_only"))
        try:
            bad = cli("verify-audit")
        finally:
            with sessions.begin() as s:
                s.execute(text("ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only"))
                s.execute(
                    text("UPDATE audit_seals SET row_hash = :genuine WHERE seq = :seq"),
                    {"genuine": genuine, "seq": victim_seq},
                )
                s.execute(text("ALTER TABLE audit_seals ENABLE TRIGGER audit_seals_append_only"))
    assert bad.returncode == 1
    assert f"BROKEN at seq {victim_seq}" in bad.stderr
    assert cli("verify-audit").returncode == 0


def test_audit_chain_detects_a_deleted_seal(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    make_customer()
    seal_all(sessions)
    with sessions.begin() as s:
        _, victim_seq = _sealed(s, 2)
        s.execute(text("ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only"))
        s.execute(text("DELETE FROM audit_seals WHERE seq = :seq"), {"seq": victim_seq})
        result = verify_chain(s)
        s.rollback()
    assert result.broken_at_seq == victim_seq + 1
    assert "missing" in (result.reason or "")
