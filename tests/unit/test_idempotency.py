import uuid

import pytest

from core.errors import IdempotencyKeyRequired
from core.models import TransferKind
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
        {"hold": True},
        {"hold": True, "hold_expires_in_seconds": 600},
    ):
        assert fingerprint(TransferKind.TRANSFER, movement(**change)) != a
    assert fingerprint(TransferKind.DEPOSIT, movement()) != a


def test_a_plain_transfer_keeps_the_hash_it_had_before_holds() -> None:
    # Keys bound before holds existed must still replay: the hash of a non-hold body is unchanged.
    assert fingerprint(TransferKind.TRANSFER, movement()) == (
        "e0694890cd707c2942c7f91bfad51ce933d901521a30d8cc5dceb40d202590b3"
    )
    assert fingerprint(TransferKind.TRANSFER, movement(hold=True)) != fingerprint(
        TransferKind.TRANSFER, movement(hold=True, hold_expires_in_seconds=86_400)
    )


@pytest.mark.parametrize("key", [None, "", "x" * 256, "tab\there"])
def test_key_must_be_1_to_255_printable_chars(key: str | None) -> None:
    with pytest.raises(IdempotencyKeyRequired):
        validate_key(key)
