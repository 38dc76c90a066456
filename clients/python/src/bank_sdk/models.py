"""Typed views of the API's resources. tests/test_models.py holds their fields equal to the
OpenAPI document's (TransferOut, AccountOut, EventOut): a field added or renamed on either side fails it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "VOIDED", "EXPIRED"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _build(cls: type[T], data: dict[str, Any], times: tuple[str, ...]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: (_time(v) if k in times else v) for k, v in data.items() if k in names}
    return cls(**values)


@dataclass(frozen=True)
class Transfer:
    id: str
    kind: str
    source_account_id: str
    destination_account_id: str
    amount: int
    currency: str
    reference: str | None
    status: str
    failure_code: str | None
    failure_detail: dict[str, Any] | None
    hold: bool
    hold_expires_at: datetime | None
    captured_amount: int | None
    refund_of: str | None
    batch_id: str | None
    created_at: datetime | None
    completed_at: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """HELD is not final (a capture, void or expiry ends it); PENDING is not."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transfer:
        return _build(cls, data, ("hold_expires_at", "created_at", "completed_at"))


@dataclass(frozen=True)
class Account:
    id: str
    user_id: str | None
    currency: str
    balance: int
    available_balance: int
    credit_limit: int
    status: str
    created_at: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    # The code a payer at another bank writes in the payment's reference to credit this account.
    inbound_reference: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return _build(cls, data, ("created_at",))


@dataclass(frozen=True)
class Event:
    id: str  # the webhook-id of its deliveries
    sequence: int  # the feed position
    type: str
    created_at: datetime | None
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return _build(cls, data, ("created_at",))
