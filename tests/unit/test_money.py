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


@pytest.mark.parametrize("code", ["usd", "US", "USDT", "U1D", ""])
def test_currency_must_be_iso_4217_shaped(code: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_currency(code)
