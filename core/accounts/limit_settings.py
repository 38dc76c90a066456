"""Setting and reading an account's spend controls: the bank's caps and credit line (admin), the
owner's own lower limits, and what is in force with today's and this month's use."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core import audit
from core.accounts import monitors, usage
from core.accounts.limits import CREDIT_LIMIT, LIMIT_NAMES, Limits, bank_caps, limits_in_force
from core.db import ROW_LOCK
from core.errors import LimitAboveBankCap, NotFound
from core.models import Account, AccountKind, User


@dataclass(frozen=True)
class LimitsView:
    """GET /accounts/{id}/limits."""

    account_id: uuid.UUID
    currency: str
    credit_limit: int
    per_transfer: int | None
    daily_outgoing: int | None
    monthly_outgoing: int | None
    used_today: int
    used_this_month: int
    bank_caps: Limits


def view(session: Session, account: Account) -> LimitsView:
    """The limits in force (the lower of the owner's and the bank's), the bank's caps alone, and
    the account's use of today and this month (UTC)."""
    used_today, used_this_month = usage.current(session, account.id)
    in_force = limits_in_force(account)
    return LimitsView(
        account_id=account.id,
        currency=account.currency,
        credit_limit=account.credit_limit,
        per_transfer=in_force.per_transfer,
        daily_outgoing=in_force.daily_outgoing,
        monthly_outgoing=in_force.monthly_outgoing,
        used_today=used_today,
        used_this_month=used_this_month,
        bank_caps=bank_caps(account),
    )


def set_bank_limits(
    session: Session,
    account_id: uuid.UUID,
    changes: Mapping[str, int | None],
    *,
    admin_id: uuid.UUID,
    reason: str,
    request_id: str | None,
) -> Account:
    """Set the bank's caps and the credit line (keys of ``changes``: credit_limit and LIMIT_NAMES;
    None lifts a cap, or ends the line). Lowering a line below what is drawn is allowed: the
    account is then over its line (the database marks it) and takes no new debit until back
    within. Audited with the values before and after; a new line's effect on the available
    balance is a change balance monitors see."""
    account = _locked_customer_account(session, account_id)
    before = _bank_settings(account)
    balances_before = monitors.values_of(account)
    for name, value in changes.items():
        if name == CREDIT_LIMIT:
            account.credit_limit = value or 0
        else:
            setattr(account, f"bank_{name}", value)
    session.flush()  # the trigger decides over_credit_line; the audit row records the result
    session.refresh(account)
    # A line moves the available balance: its monitors see that change like any other.
    monitors.balances_changed(session, monitors.changes_since(balances_before, (account,), None))
    audit.record(
        session,
        action="account.limits_set",
        entity_type="account",
        entity_id=account.id,
        actor_id=admin_id,
        request_id=request_id,
        details={
            "reason": reason,
            "before": before,
            "after": _bank_settings(account),
            "over_credit_line": account.over_credit_line,
        },
    )
    return account


def set_own_limits(
    session: Session, account_id: uuid.UUID, changes: Mapping[str, int | None], *, user: User, request_id: str | None
) -> Account:
    """The owner's own limits (keys of ``changes`` among LIMIT_NAMES; None: no own limit), each at
    or below the bank's cap for it (LIMIT_ABOVE_BANK_CAP otherwise). Audited."""
    account = _locked_customer_account(session, account_id)
    if account.user_id != user.id:
        raise NotFound("account not found")
    caps = bank_caps(account)
    above = {
        name: [f"Must be at most the bank's cap of {getattr(caps, name)}."]
        for name, value in changes.items()
        if value is not None and getattr(caps, name) is not None and value > getattr(caps, name)
    }
    if above:
        raise LimitAboveBankCap("a limit is above the bank's cap", errors=above)
    before = {name: getattr(account, f"own_{name}") for name in LIMIT_NAMES}
    for name, value in changes.items():
        setattr(account, f"own_{name}", value)
    audit.record(
        session,
        action="account.own_limits_set",
        entity_type="account",
        entity_id=account.id,
        actor_id=user.id,
        request_id=request_id,
        details={"before": before, "after": {name: getattr(account, f"own_{name}") for name in LIMIT_NAMES}},
    )
    return account


def apply_defaults(account: Account, defaults: Limits) -> None:
    """A new account's bank caps: the operator's configured defaults (none unless configured)."""
    for name in LIMIT_NAMES:
        setattr(account, f"bank_{name}", getattr(defaults, name))


def _locked_customer_account(session: Session, account_id: uuid.UUID) -> Account:
    # The row lock settlement takes: a change and a settlement of this account are ordered.
    account = session.get(Account, account_id, with_for_update=ROW_LOCK, populate_existing=True)
    if account is None or account.kind != AccountKind.CUSTOMER:
        raise NotFound("account not found")
    return account


def _bank_settings(account: Account) -> dict[str, Any]:
    return {CREDIT_LIMIT: account.credit_limit, **{name: getattr(account, f"bank_{name}") for name in LIMIT_NAMES}}
