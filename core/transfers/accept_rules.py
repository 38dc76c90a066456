"""The accept checks of a customer transfer on the caller and the accounts, each written once.

A check is data: columns of the caller's user row or of an account row that must equal a
constant or a value of the request. Two renderings are derived from these tuples and nothing
else: ``hold`` (Python) for the careful path (submit.check_user and submit.check_accounts,
which raise each check's own error, in API.md's order), and ``sql`` for the one-statement
accept (accept.py), whose statement writes nothing when one fails, so the careful path then
names the refusal. Changing a check is one edit here; tests/integration/test_accept_paths_agree.py
holds the two paths to the same answers. The per_transfer limit is core.accounts.limits' (its
Python and SQL renderings side by side there).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import AccountInactive, NotFound
from core.models import AccountStatus, KycStatus, UserStatus


@dataclass(frozen=True)
class Equals:
    """``row.column`` equals ``constant``, or the request's value named ``param`` (a bind
    parameter of that name in SQL)."""

    column: str
    constant: enum.StrEnum | None = None
    param: str | None = None

    def holds(self, row: Any, request: Mapping[str, Any]) -> bool:
        expected = self.constant if self.param is None else request[self.param]
        return bool(getattr(row, self.column) == expected)

    def sql(self, alias: str) -> str:
        expected = f"'{self.constant}'" if self.param is None else f":{self.param}"
        return f"{alias}.{self.column} = {expected}"


Check = tuple[Equals, ...]

# The caller may move money at all (submit.check_user): KYC approved (else KYC_NOT_APPROVED),
# then an active user (else 403).
KYC_APPROVED: Check = (Equals("kyc_status", KycStatus.APPROVED),)
USER_ACTIVE: Check = (Equals("status", UserStatus.ACTIVE),)

# The source account (submit.check_accounts): the caller's (else a 404), in the transfer's
# currency (else CURRENCY_MISMATCH), active (else ACCOUNT_INACTIVE).
SOURCE_OWNED: Check = (Equals("user_id", param="initiated_by"),)
SOURCE_IN_CURRENCY: Check = (Equals("currency", param="currency"),)
ACTIVE: Check = (Equals("status", AccountStatus.ACTIVE),)  # money moves only out of and into these
SOURCE_ACTIVE: Check = ACTIVE

# The destination can receive the transfer: of the kind the transfer goes to (``receiver``: a
# customer's account, or the bank's in-transit account for a payout), active, in the transfer's
# currency. One answer (a 404) when it cannot, whichever condition fails.
CAN_RECEIVE: Check = (Equals("kind", param="receiver"), *ACTIVE, Equals("currency", param="currency"))
DESTINATION_CANNOT_RECEIVE = "destination account not found or cannot receive this transfer"


def hold(check: Check, row: Any, request: Mapping[str, Any]) -> bool:
    """Every condition of ``check`` holds for ``row`` (a model or a row with those columns)."""
    return all(condition.holds(row, request) for condition in check)


def sql(alias: str, *checks: Check) -> str:
    """Every condition of ``checks`` as one SQL condition on the row ``alias``."""
    return " AND ".join(condition.sql(alias) for check in checks for condition in check)


def check_may_move(sender: Any, receiver: Any, *, sender_named: str) -> None:
    """Money moves now between the accounts of an earlier transfer (a capture, a refund): only
    their status can have changed since it was accepted, and both must be ACTIVE. The sender's
    side is named (ACCOUNT_INACTIVE); the receiver's answers as a destination that cannot
    receive (a 404 that does not say why), so nobody can probe the other party's account status
    (e.g. a compliance freeze)."""
    if not hold(ACTIVE, sender, {}):
        raise AccountInactive(f"{sender_named} is {sender.status.value}")
    if not hold(ACTIVE, receiver, {}):
        raise NotFound(DESTINATION_CANNOT_RECEIVE)
