"""The audit log is append-only in the database, and every sensitive action writes to it."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from core.models import AuditLog


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE audit_log SET action = 'tampered'", "append-only"),
        ("DELETE FROM audit_log", "append-only"),
        # The seals reference the rows: a plain TRUNCATE fails on the foreign key first, and
        # CASCADE reaches audit_seals, whose own trigger refuses it.
        ("TRUNCATE audit_log", "append-only|foreign key"),
        ("TRUNCATE audit_log CASCADE", "append-only"),
    ],
)
def test_audit_rows_cannot_be_changed_or_removed(sessions, make_customer, statement, refusal) -> None:  # type: ignore[no-untyped-def]
    make_customer()  # at least one row exists
    with pytest.raises(DBAPIError, match=refusal), sessions.begin() as s:
        s.execute(text(statement))
    with sessions() as s:
        assert s.scalar(select(AuditLog).where(AuditLog.action == "tampered")) is None


def test_customer_lifecycle_is_audited(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import fund

    c = make_customer()
    fund(sessions, admin_user, c.account, 10)
    with sessions() as s:
        actions = set(s.scalars(select(AuditLog.action).where(AuditLog.entity_id == str(c.user.id))))
        assert {"user.registered", "kyc.approved", "pin.set"} <= actions
        deposit_rows = s.scalars(select(AuditLog).where(AuditLog.action == "deposit.completed")).all()
        assert any(r.details.get("account_id") == str(c.account.id) for r in deposit_rows)
