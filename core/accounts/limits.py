"""Velocity limits and credit lines: the rules that decide whether a debit may happen.

Each rule is written once here; accept (``check_per_transfer``, and its SQL rendering for the
one-statement accept), settlement (``outgoing_breach``, ``credit_breach``) and the limits
services call these. A limit in force is the lower of the bank's cap and the owner's own limit
(None: none), as Postgres' LEAST (which ignores NULLs) computes it in SQL.

Order of the settlement checks (after ACCOUNT_INACTIVE): ``daily_outgoing``, ``monthly_outgoing``
(LIMIT_EXCEEDED), then the available balance, credit line included (INSUFFICIENT_FUNDS).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.errors import LimitExceeded

LIMIT_NAMES = ("per_transfer", "daily_outgoing", "monthly_outgoing")
CREDIT_LIMIT = "credit_limit"


@dataclass(frozen=True)
class Limits:
    per_transfer: int | None = None
    daily_outgoing: int | None = None
    monthly_outgoing: int | None = None


@dataclass(frozen=True)
class Breach:
    """A limit a debit would break: the transfer's ``failure_detail``."""

    limit: str  # daily_outgoing, monthly_outgoing, per_transfer or credit_limit
    limit_amount: int
    used: int
    requested: int

    def as_detail(self) -> dict[str, Any]:
        return asdict(self)


def in_force(bank: int | None, own: int | None) -> int | None:
    """The lower of the bank's cap and the owner's limit; None when neither is set."""
    set_ = [v for v in (bank, own) if v is not None]
    return min(set_) if set_ else None


def in_force_sql(alias: str, name: str) -> str:
    """``in_force`` over the account row ``alias`` in SQL (LEAST ignores NULLs, as in_force does)."""
    return f"LEAST({alias}.bank_{name}, {alias}.own_{name})"


def limits_in_force(account: Any) -> Limits:
    """The limits an account (its row or model) is held to."""
    return Limits(*(in_force(getattr(account, f"bank_{n}"), getattr(account, f"own_{n}")) for n in LIMIT_NAMES))


def bank_caps(account: Any) -> Limits:
    return Limits(*(getattr(account, f"bank_{n}") for n in LIMIT_NAMES))


def own_limits(account: Any) -> Limits:
    return Limits(*(getattr(account, f"own_{n}") for n in LIMIT_NAMES))


# ---- per_transfer: refused at accept ---------------------------------------------------------


def per_transfer_breach(limits: Limits, amount: int) -> Breach | None:
    if limits.per_transfer is not None and amount > limits.per_transfer:
        return Breach("per_transfer", limits.per_transfer, 0, amount)
    return None


def check_per_transfer(source: Any, amount: int) -> None:
    """Every accept path's rule: a transfer above the source's per_transfer limit is a 422."""
    breach = per_transfer_breach(limits_in_force(source), amount)
    if breach is not None:
        raise LimitExceeded(
            f"amount exceeds the account's per_transfer limit of {breach.limit_amount}",
            limit=breach.limit,
            limit_amount=breach.limit_amount,
            requested=breach.requested,
        )


def per_transfer_allows_sql(alias: str, amount: str) -> str:
    """``per_transfer_breach(...) is None`` as a SQL condition on the account row ``alias``;
    ``amount`` is the SQL expression of the transfer's amount."""
    limit = in_force_sql(alias, "per_transfer")
    return f"({limit} IS NULL OR {amount} <= {limit})"


# ---- daily and monthly: decided by settlement, in accept order --------------------------------


def outgoing_breach(limits: Limits, used_today: int, used_this_month: int, amount: int) -> Breach | None:
    """The first period limit a debit of ``amount`` would break, given the use of its day and
    month before it (the periods its accept time falls in)."""
    for name, limit, used in (
        ("daily_outgoing", limits.daily_outgoing, used_today),
        ("monthly_outgoing", limits.monthly_outgoing, used_this_month),
    ):
        if limit is not None and used + amount > limit:
            return Breach(name, limit, used, amount)
    return None


# ---- credit lines -----------------------------------------------------------------------------


def available(balance: int, held: int, credit_limit: int) -> int:
    """What a debit may spend: the balance less open holds, plus the credit line."""
    return balance - held + credit_limit


def credit_drawn(balance: int, held: int) -> int:
    """How much of the credit line is in use (balance and holds together)."""
    return max(0, held - balance)


def credit_breach(balance: int, held: int, credit_limit: int, amount: int) -> Breach | None:
    """A debit the available balance (credit line included) cannot cover: INSUFFICIENT_FUNDS.
    The breach is the transfer's failure_detail when the account has a line (``has_line``)."""
    if available(balance, held, credit_limit) >= amount:
        return None
    return Breach(CREDIT_LIMIT, credit_limit, credit_drawn(balance, held), amount)


def has_line(breach: Breach) -> bool:
    return breach.limit != CREDIT_LIMIT or breach.limit_amount > 0
