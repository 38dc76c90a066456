import uuid

import pytest

from core.errors import IdempotencyKeyRequired
from core.models import TransferKind
from core.pagination import decode_cursor, encode_cursor
from core.transfers.idempotency import MoneyMovement, fingerprint, validate_key


def movement(**kw: object) -> MoneyMovement:
    base = dict(
        source_account_id=uuid.UUID(int=1),
        destination_account_id=uuid.UUID(int=2),
        amount=100,
        currency="USD",
        reference=None,
    )
    base.update(kw)
    return MoneyMovement(**base)  # type: ignore[arg-type]


def test_fingerprint_is_stable_and_sensitive_to_every_field() -> None:
    a = fingerprint(TransferKind.TRANSFER, movement())
    assert a == fingerprint(TransferKind.TRANSFER, movement())
    for change in (
        {"amount": 101},
        {"currency": "EUR"},
        {"reference": "x"},
        {"destination_account_id": uuid.UUID(int=3)},
    ):
        assert fingerprint(TransferKind.TRANSFER, movement(**change)) != a
    assert fingerprint(TransferKind.DEPOSIT, movement()) != a


@pytest.mark.parametrize("key", [None, "", "x" * 256, "tab\there"])
def test_key_must_be_1_to_255_printable_chars(key: str | None) -> None:
    with pytest.raises(IdempotencyKeyRequired):
        validate_key(key)


def test_cursor_round_trip() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    ident = uuid.uuid4()
    assert decode_cursor(encode_cursor(now, ident)) == (now, ident)
