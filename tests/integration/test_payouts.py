"""Payouts (API.md "External money and reconciliation"): the bank's in-transit account, POST
/payouts checked as a transfer, GET /payouts, and the payout's status."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.accounts.service import in_transit_account_id, settlement_account_id
from core.models import Account, AccountKind, AccountStatus


def test_one_in_transit_account_per_currency_owned_by_the_bank(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        first = in_transit_account_id(s, "CHF")
        assert in_transit_account_id(s, "CHF") == first
        assert first != settlement_account_id(s, "CHF")  # its own account, beside the settlement one
        account = s.get_one(Account, first)
        assert (account.kind, account.user_id, account.status) == (AccountKind.IN_TRANSIT, None, AccountStatus.ACTIVE)


def test_an_in_transit_account_has_no_owner(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with pytest.raises(IntegrityError, match="owner_matches_kind"), sessions.begin() as s:
        s.add(Account(user_id=alice.user.id, kind=AccountKind.IN_TRANSIT, currency="CHF", status=AccountStatus.ACTIVE))
        s.flush()
    with sessions() as s:
        assert s.scalars(select(Account).where(Account.user_id == alice.user.id, Account.currency == "CHF")).all() == []
