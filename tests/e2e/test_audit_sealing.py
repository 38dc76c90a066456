"""The worker's beat seals audit rows written by the API, and the chain verifies."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.audit.verify import verify_chain
from core.models import AuditLog, AuditSeal
from tests import factories
from tests.waits import wait_for

pytestmark = pytest.mark.e2e


def test_beat_seals_the_audit_rows_of_a_transfer(http, sessions, settings, admin_user, workers) -> None:  # type: ignore[no-untyped-def]
    customer = factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, customer.account, 100)
    with sessions() as s:
        ids = set(s.scalars(select(AuditLog.id).where(AuditLog.entity_id == str(customer.user.id))))
    assert ids

    def all_sealed() -> bool:
        with sessions() as s:
            return set(s.scalars(select(AuditSeal.audit_id).where(AuditSeal.audit_id.in_(ids)))) == ids

    wait_for(f"the {len(ids)} audit rows sealed by the beat", all_sealed, timeout=30, interval=0.2)
    with sessions.begin() as s:
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        result = verify_chain(s)
    assert result.ok, result.reason
