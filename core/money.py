"""Money is an integer count of minor units plus an ISO 4217 code; never a float."""

from __future__ import annotations

import pycountry

from core.errors import ValidationFailed

MAX_AMOUNT = 2**53 - 1  # largest integer every JSON client represents exactly

# ISO 4217 codes that are not money an account holds: testing, "no currency", precious metals,
# bond-market units and the IMF's SDR and ADB unit.
_NOT_ACCOUNT_CURRENCIES = frozenset(
    {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)
CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies) - _NOT_ACCOUNT_CURRENCIES


def validate_amount(amount: object) -> int:
    # bool is an int subclass in Python; True must not mean one cent.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("amount must be an integer", errors={"amount": ["Not a valid integer."]})
    if not 0 < amount <= MAX_AMOUNT:
        raise ValidationFailed("amount out of range", errors={"amount": [f"Must be between 1 and {MAX_AMOUNT}."]})
    return amount


def is_currency(code: str) -> bool:
    return code in CURRENCIES


def validate_currency(code: str) -> str:
    if not is_currency(code):
        raise ValidationFailed(
            "currency must be an ISO 4217 code", errors={"currency": ["Must be an ISO 4217 currency code."]}
        )
    return code
