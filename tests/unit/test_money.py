import pytest

from core.errors import ValidationFailed
from core.money import MAX_AMOUNT, validate_amount, validate_currency


@pytest.mark.parametrize("amount", [1, 12550, MAX_AMOUNT])
def test_accepts_positive_integers_up_to_2_53_minus_1(amount: int) -> None:
    assert validate_amount(amount) == amount


@pytest.mark.parametrize("amount", [0, -1, MAX_AMOUNT + 1, 1.5, 1.0, "100", True, None])
def test_rejects_everything_else(amount: object) -> None:
    with pytest.raises(ValidationFailed):
        validate_amount(amount)


@pytest.mark.parametrize("code", ["usd", "US", "USDT", "U1D", "", "ZZZ", "ABC", "USD\n", "XXX", "XTS", "XAU"])
def test_currency_must_be_an_iso_4217_money_code(code: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_currency(code)


@pytest.mark.parametrize("code", ["USD", "EUR", "IDR", "JPY", "KWD", "XOF", "CHF"])
def test_iso_4217_currencies_are_accepted(code: str) -> None:
    assert validate_currency(code) == code
