import uuid

import pytest

from core.errors import ValidationFailed
from core.identity.pins import hash_pin, validate_pin, verify_pin

PEPPER = b"p" * 32


def test_hash_is_keyed_by_pepper_and_user() -> None:
    user = uuid.uuid4()
    h = hash_pin(PEPPER, user, "1234")
    assert "1234" not in h
    assert h != hash_pin(b"q" * 32, user, "1234")
    assert h != hash_pin(PEPPER, uuid.uuid4(), "1234")
    assert verify_pin(PEPPER, user, "1234", h)
    assert not verify_pin(PEPPER, user, "1235", h)


@pytest.mark.parametrize("pin", ["123", "1234567", "12a4", " 1234", "١٢٣٤"])
def test_pin_must_be_4_to_6_ascii_digits(pin: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_pin(pin)
