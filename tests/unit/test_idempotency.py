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


def test_every_request_hash_keeps_its_bytes() -> None:
    """Every idempotent endpoint hashes with idempotency.request_fingerprint; a key bound before
    it was the one hash must still replay, so each kind of request keeps the digest it had
    (these were computed by the four separate functions that existed before)."""
    from datetime import UTC, datetime

    from core.models import HoldAction
    from core.schedules.models import ShortFundsPolicy
    from core.schedules.service import ScheduleRequest
    from core.transfers.holds import action_fingerprint
    from core.transfers.refund import refund_fingerprint

    one, two = uuid.UUID(int=1), uuid.UUID(int=2)
    rich = movement(reference="rent é", hold=True, hold_expires_in_seconds=600, metadata={"b": "2", "a": "1"})
    assert fingerprint(TransferKind.TRANSFER, rich) == (
        "5c4b992b77c1cf617d77146fbc9e9ca4fbec825cf3dcbb36ce3e74fb20841a69"
    )
    deposit = MoneyMovement(None, two, 5, "EUR", None)
    assert fingerprint(TransferKind.DEPOSIT, deposit) == (
        "eb9b2573a7fa121a3cc2ccbb535f05133d9e0edf59013b8807a204930122cb17"
    )
    assert action_fingerprint(HoldAction.CAPTURE, uuid.UUID(int=7), 40) == (
        "89d0da25cbbc46df7c0207a698c291a42d21ee4bfd8ce5f3d675d1a5fba66d77"
    )
    assert action_fingerprint(HoldAction.VOID, uuid.UUID(int=7), None) == (
        "ce8f708096dda2df848213179717689e56e6b8361690ea6bc35a1b785fd2928e"
    )
    assert refund_fingerprint(uuid.UUID(int=9), None, "sorry") == (
        "2b681bb4dfbd8d96b3c159cd5f3459afc2ffb50b22914da35298a8020c394f78"
    )
    assert refund_fingerprint(uuid.UUID(int=9), 25, None) == (
        "2ed0013d09d29b182c2bddc1e22c275cdc0e02ffa04a98da6b2c0f7818d6d732"
    )
    start = datetime(2027, 1, 1, 9, tzinfo=UTC)
    policies = list(ShortFundsPolicy)
    monthly = ScheduleRequest(one, two, 100, "USD", "ref", start, "FREQ=MONTHLY", None, 12, policies[0], {"k": "v"})
    assert monthly.fingerprint() == "ee7ccc3e0e73eb6abe0b76166a08bf234a2447043c1d509f28b4c0d35f3b19d0"
    once = ScheduleRequest(one, two, 100, "USD", None, start, None, None, None, policies[-1])
    assert once.fingerprint() == "ee0e76398e39462b9bc7fcb5603cf2852d188d154d0f764a9da9ab639bcd92d6"
