"""A partner's flow through the client that openapi-python-client generates from /api/v1/openapi.json.

Checked by ``mypy --strict`` with no cast and no ``type: ignore`` (every value is typed by the
document alone), then run against the API by tests/integration/test_openapi_clients.py:
register -> KYC -> deposit -> transfer -> poll -> replay -> statement -> hold -> capture -> refund
-> error. What a partner cannot do through the API (an admin's token, settlement by the worker) the
test hands in as ``Bank``.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar

from bank_client import AuthenticatedClient, Client
from bank_client.api.admin import create_deposit, decide_kyc
from bank_client.api.auth import login, register
from bank_client.api.me import set_pin
from bank_client.api.refunds import create_refund
from bank_client.api.statements import get_statement
from bank_client.api.transfers import capture_transfer, create_transfer, get_transfer
from bank_client.models import (
    CaptureIn,
    Currency,
    DepositIn,
    KycDecision,
    KycDecisionIn,
    LoginIn,
    PinIn,
    ProblemCode,
    ProblemOut,
    RefundIn,
    RegisterIn,
    TransferIn,
    TransferOut,
    TransferStatus,
)
from bank_client.types import Response

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
PIN = "2468"


@dataclass(frozen=True)
class Bank:
    """What the test provides: clients on the API, an admin's token, and the settlement worker."""

    public: Client
    authenticated: Callable[[str], AuthenticatedClient]
    admin_token: str
    settle: Callable[[uuid.UUID], None]


def expect(response: Response[ProblemOut | T], status: HTTPStatus) -> T:
    """The body of a success: the status asked for, and not a problem."""
    assert response.status_code == status, (response.status_code, response.content)
    parsed = response.parsed
    assert parsed is not None and not isinstance(parsed, ProblemOut), parsed
    return parsed


def problem(response: Response[ProblemOut | T], status: HTTPStatus) -> ProblemOut:
    assert response.status_code == status, (response.status_code, response.content)
    assert isinstance(response.parsed, ProblemOut), response.parsed
    return response.parsed


def customer(bank: Bank, admin: AuthenticatedClient, email: str) -> tuple[AuthenticatedClient, uuid.UUID]:
    """Register, get KYC approved, log in, set a PIN: a customer who may send money."""
    registered = expect(
        register.sync_detailed(
            client=bank.public, body=RegisterIn(email=email, password=PASSWORD, full_name="Ada", currency=Currency.USD)
        ),
        HTTPStatus.CREATED,
    )
    approved = expect(
        decide_kyc.sync_detailed(registered.user.id, client=admin, body=KycDecisionIn(decision=KycDecision.APPROVE)),
        HTTPStatus.OK,
    )
    assert approved.kyc_status.value == "APPROVED"
    tokens = expect(
        login.sync_detailed(client=bank.public, body=LoginIn(email=email, password=PASSWORD)), HTTPStatus.OK
    )
    me = bank.authenticated(tokens.access_token)
    assert set_pin.sync_detailed(client=me, body=PinIn(pin=PIN)).status_code == HTTPStatus.NO_CONTENT
    return me, registered.account.id


def run(bank: Bank, tag: str) -> None:
    admin = bank.authenticated(bank.admin_token)
    alice, alice_account = customer(bank, admin, f"alice-{tag}@example.com")
    bob, bob_account = customer(bank, admin, f"bob-{tag}@example.com")

    deposit = expect(
        create_deposit.sync_detailed(
            alice_account,
            client=admin,
            body=DepositIn(amount=10_000, currency=Currency.USD, reference="opening"),
            idempotency_key=f"deposit-{tag}",
        ),
        HTTPStatus.CREATED,
    )
    assert deposit.transfer.status == TransferStatus.COMPLETED

    # Transfer, poll, replay.
    send = TransferIn(
        source_account_id=alice_account,
        destination_account_id=bob_account,
        amount=2_500,
        currency=Currency.USD,
        pin=PIN,
        reference="invoice 1",
    )
    accepted = create_transfer.sync_detailed(client=alice, body=send, idempotency_key=f"send-{tag}")
    transfer: TransferOut = expect(accepted, HTTPStatus.ACCEPTED)
    assert accepted.headers["Location"].endswith(str(transfer.id))
    assert "Idempotent-Replayed" not in accepted.headers
    bank.settle(transfer.id)
    polled = expect(get_transfer.sync_detailed(transfer.id, client=alice), HTTPStatus.OK)
    assert polled.status == TransferStatus.COMPLETED and polled.completed_at is not None
    replay = create_transfer.sync_detailed(client=alice, body=send, idempotency_key=f"send-{tag}")
    assert expect(replay, HTTPStatus.OK).id == transfer.id
    assert replay.headers["Idempotent-Replayed"] == "true"

    # Statement of the day: the deposit in, the transfer out.
    now = datetime.datetime.now(datetime.UTC)
    statement = expect(
        get_statement.sync_detailed(
            alice_account, client=alice, from_=now - datetime.timedelta(hours=1), to=now + datetime.timedelta(hours=1)
        ),
        HTTPStatus.OK,
    )
    assert [entry.amount for entry in statement.entries] == [10_000, -2_500]
    assert statement.closing_balance == statement.opening_balance + 7_500

    # Hold, capture part of it, then Bob refunds some of what he received.
    hold = TransferIn(
        source_account_id=alice_account,
        destination_account_id=bob_account,
        amount=1_000,
        currency=Currency.USD,
        pin=PIN,
        hold=True,
    )
    held = expect(
        create_transfer.sync_detailed(client=alice, body=hold, idempotency_key=f"hold-{tag}"), HTTPStatus.ACCEPTED
    )
    bank.settle(held.id)
    assert expect(get_transfer.sync_detailed(held.id, client=alice), HTTPStatus.OK).status == TransferStatus.HELD
    captured = expect(
        capture_transfer.sync_detailed(
            held.id, client=alice, body=CaptureIn(amount=600), idempotency_key=f"capture-{tag}"
        ),
        HTTPStatus.ACCEPTED,
    )
    assert captured.status == TransferStatus.COMPLETED and captured.captured_amount == 600
    refund = expect(
        create_refund.sync_detailed(
            held.id, client=bob, body=RefundIn(amount=100, reason="partial"), idempotency_key=f"refund-{tag}"
        ),
        HTTPStatus.ACCEPTED,
    )
    assert refund.refund_of == held.id and refund.amount == 100
    bank.settle(refund.id)  # nothing left PENDING: a refund settles like any transfer
    assert expect(get_transfer.sync_detailed(refund.id, client=bob), HTTPStatus.OK).status == TransferStatus.COMPLETED

    # An error is a typed problem with a code from the document's enum.
    wrong_pin = TransferIn(
        source_account_id=alice_account,
        destination_account_id=bob_account,
        amount=1,
        currency=Currency.USD,
        pin="0000",
    )
    refused = problem(
        create_transfer.sync_detailed(client=alice, body=wrong_pin, idempotency_key=f"wrong-{tag}"),
        HTTPStatus.FORBIDDEN,
    )
    assert refused.code == ProblemCode.INVALID_PIN and refused.status == 403
