"""A transfer's statuses are the contract's: PENDING until final, with nothing in between."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from core.models import Transfer, TransferStatus
from tests.factories import fund


def test_the_statuses_are_the_contracts() -> None:
    assert [s.value for s in TransferStatus] == ["PENDING", "COMPLETED", "FAILED", "HELD", "VOIDED", "EXPIRED"]


def test_the_database_refuses_processing(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 100)
    with sessions() as s:
        deposit_id = s.scalars(select(Transfer.id).where(Transfer.destination_account_id == alice.account.id)).one()
    with pytest.raises(IntegrityError, match="ck_transfers_transfer_status"), sessions.begin() as s:
        s.execute(text("UPDATE transfers SET status = 'PROCESSING' WHERE id = :id"), {"id": deposit_id})
