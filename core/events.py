"""Domain events: what changed, written in the same transaction as the change (the outbox).

Services (transfers, holds, deposits, refunds) write events here and know nothing of who
listens; a committed change always has its events, a rolled-back one never has. Subscribers read
committed events later: the webhook relay (core.webhooks.relay) fans them out to partners'
endpoints, whatever crashed in between.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import BigInteger, DateTime, Identity, Index, Table, Uuid, func, insert
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import copy_rows
from core.metadata import shown, stored_metadata
from core.models import Account, Base, TransferStatus, enum_column


class EventType(enum.StrEnum):
    TRANSFER_PENDING = "transfer.pending"
    TRANSFER_COMPLETED = "transfer.completed"
    TRANSFER_FAILED = "transfer.failed"
    TRANSFER_HELD = "transfer.held"
    TRANSFER_VOIDED = "transfer.voided"
    TRANSFER_EXPIRED = "transfer.expired"
    ACCOUNT_CREDITED = "account.credited"
    ACCOUNT_DEBITED = "account.debited"
    BALANCE_MONITOR_TRIGGERED = "balance.monitor_triggered"  # core/accounts/monitors.py
    PAYOUT_SENT = "payout.sent"  # core/payouts/files.py
    PAYOUT_SETTLED = "payout.settled"  # core/reconciliation
    PAYOUT_RETURNED = "payout.returned"  # core/reconciliation


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)


class DomainEvent(Base):
    """One event of the outbox. The table keeps its first name, ``webhook_events``: renaming it
    would be a migration for no behaviour. Partitioned by UTC day of ``occurred_at`` (migration
    0028, core/events_partitions.py): a day past the retention is dropped whole; so every unique
    key includes ``occurred_at``, and find an event by ``id`` with a query, not ``Session.get``."""

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Allocation order: later state changes of one transfer always get a larger number. Unique
    # by the identity alone (ALWAYS): a unique index would have to include occurred_at.
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    event_type: Mapped[EventType] = mapped_column(enum_column(EventType, "webhook_event_type", length=32))
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, primary_key=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The users the event concerns; only their endpoints receive it. Empty: nobody (bank-only).
    owner_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    # Set by the webhook relay once it has fanned the event out to deliveries.
    relayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The event's place in the events feed (core/events_feed.py), given by the relay after the
    # event committed; NULL until then. No default and a partial index: writers pay nothing.
    feed_position: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # The relay's scan: events not yet fanned out, oldest first.
        Index("ix_webhook_events_unrelayed", "sequence", postgresql_where="relayed_at IS NULL"),
        # The feed's scan, by position; unpositioned rows (every insert) are not in it.
        Index(
            "ix_webhook_events_feed_position",
            "feed_position",
            "occurred_at",
            unique=True,
            postgresql_where="feed_position IS NOT NULL",
        ),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )


def published_data(event: DomainEvent) -> dict[str, Any]:
    """The ``data`` an event's webhooks and its feed entry carry: its payload and its sequence."""
    return {**event.data, "sequence": event.sequence}


STATUS_EVENTS = {
    TransferStatus.PENDING: EventType.TRANSFER_PENDING,
    TransferStatus.COMPLETED: EventType.TRANSFER_COMPLETED,
    TransferStatus.FAILED: EventType.TRANSFER_FAILED,
    TransferStatus.HELD: EventType.TRANSFER_HELD,
    TransferStatus.VOIDED: EventType.TRANSFER_VOIDED,
    TransferStatus.EXPIRED: EventType.TRANSFER_EXPIRED,
}


def emit(
    session: Session, event_type: EventType, data: dict[str, Any], owner_ids: Iterable[uuid.UUID | None]
) -> DomainEvent | None:
    """Add one event to the caller's transaction, for the endpoints of ``owner_ids``.

    Owners that are None (the bank's settlement accounts) are dropped; an event that
    concerns nobody is not written at all.
    """
    owners = sorted({o for o in owner_ids if o is not None})
    if not owners:
        return None
    event = DomainEvent(event_type=event_type, data=data, owner_ids=owners)
    session.add(event)
    return event


def transfer_changed(session: Session, transfer: Any, source: Account, destination: Account) -> None:
    """Events for the transfer's new status; when it completed, also debited/credited per account.

    Call after the change is flushed, with both accounts as they are now (balances included).
    """
    emit_many(
        session,
        transfer_events(
            transfer,
            source_owner=source.user_id,
            destination_owner=destination.user_id,
            balances_after=(source.balance, destination.balance),
        ),
    )


def transfer_events(
    transfer: Any,
    *,
    source_owner: uuid.UUID | None,
    destination_owner: uuid.UUID | None,
    balances_after: tuple[int, int] | None,
) -> list[dict[str, Any]]:
    """Rows for ``emit_many``: the transfer's status event, and when it completed (with the
    source and destination balances right after it) account.debited and account.credited.

    ``transfer`` is a Transfer or a row with the same columns."""
    event_type = STATUS_EVENTS.get(transfer.status)
    if event_type is None:
        return []
    data = transfer_data(transfer)
    events = [_event_row(event_type, data, (source_owner, destination_owner))]
    if transfer.status == TransferStatus.COMPLETED and balances_after is not None:
        sides = (
            (EventType.ACCOUNT_DEBITED, transfer.source_account_id, source_owner, balances_after[0]),
            (EventType.ACCOUNT_CREDITED, transfer.destination_account_id, destination_owner, balances_after[1]),
        )
        for kind, account_id, owner, balance in sides:
            events.append(_event_row(kind, account_event_data(data, account_id, balance), [owner]))
    return [e for e in events if e is not None]


def emit_many(session: Session, events: list[dict[str, Any]]) -> None:
    """Write many events with one statement (the hot path: settlement batches)."""
    if len(events) <= 3:  # one transfer's events: one cached Core statement
        if events:
            session.execute(insert(cast(Table, DomainEvent.__table__)), events)
        return
    copy_rows(  # a settlement batch: COPY, no statement to compile, no per-row round trip
        session,
        "webhook_events",
        ("id", "event_type", "data", "owner_ids"),
        # As text: psycopg's per-value JSON and array dumpers cost more than the rest of the row.
        ((e["id"], e["event_type"].value, json.dumps(e["data"]), _uuid_array(e["owner_ids"])) for e in events),
    )


def _uuid_array(ids: list[uuid.UUID]) -> str:
    """A uuid[] in Postgres' text form (uuids need no quoting)."""
    return "{" + ",".join(map(str, ids)) + "}"


def _event_row(
    event_type: EventType, data: dict[str, Any], owner_ids: Iterable[uuid.UUID | None]
) -> dict[str, Any] | None:
    owners = sorted({o for o in owner_ids if o is not None})
    if not owners:
        return None  # an event that concerns nobody (the bank's settlement side) is not written
    return {"id": uuid.uuid4(), "event_type": event_type, "data": data, "owner_ids": owners}


def account_event_data(data: dict[str, Any], account_id: uuid.UUID, balance_after: int) -> dict[str, Any]:
    """An account.debited or account.credited payload: the transfer's, plus the account and its
    balance right after the transfer."""
    return {**data, "account_id": str(account_id), "balance_after": balance_after}


def account_event_data_sql(data: str, account_id: str, balance_after: str) -> str:
    """``account_event_data`` as a Postgres expression over SQL expressions of its arguments."""
    return f"{data} || jsonb_build_object('account_id', {account_id}, 'balance_after', {balance_after})"


def owners_sql(first: str, second: str) -> str:
    """``_event_row``'s owners as a Postgres expression over two uuid expressions: the distinct
    ones that are not NULL, sorted (uuid order is byte order in both), as a uuid[]; empty when
    neither is set (a set-based writer leaves such an event out, as ``_event_row`` does)."""
    return (
        f"CASE WHEN {first} IS NULL AND {second} IS NULL THEN CAST(ARRAY[] AS uuid[])"
        f" WHEN {second} IS NULL OR {second} = {first} THEN ARRAY[{first}]"
        f" WHEN {first} IS NULL THEN ARRAY[{second}]"
        f" WHEN {second} < {first} THEN ARRAY[{second}, {first}]"
        f" ELSE ARRAY[{first}, {second}] END"
    )


class _Shown(enum.Enum):
    """How a column of ``transfers`` shows in an event's payload."""

    AS_IS = "as is"  # numbers, strings, booleans, JSON
    ENUM = "enum"  # its value
    UUID = "uuid"  # as a string, or null
    TIME = "time"  # ISO 8601 in UTC, or null
    METADATA = "metadata"  # {} when none


# The payload of a transfer's events (the API's Transfer schema plus ``updated_at``), written
# once: ``transfer_data`` renders it in Python, ``transfer_data_sql`` in SQL for the set-based
# writers (settlement, the accept paths), so the two cannot drift apart.
_TRANSFER_FIELDS: tuple[tuple[str, _Shown], ...] = (
    ("id", _Shown.UUID),
    ("kind", _Shown.ENUM),
    ("source_account_id", _Shown.UUID),
    ("destination_account_id", _Shown.UUID),
    ("amount", _Shown.AS_IS),
    ("currency", _Shown.AS_IS),
    ("reference", _Shown.AS_IS),
    ("status", _Shown.ENUM),
    ("failure_code", _Shown.AS_IS),
    ("failure_detail", _Shown.AS_IS),
    ("hold", _Shown.AS_IS),
    ("hold_expires_at", _Shown.TIME),
    ("captured_amount", _Shown.AS_IS),
    ("refund_of", _Shown.UUID),
    ("batch_id", _Shown.UUID),
    ("created_at", _Shown.TIME),
    ("completed_at", _Shown.TIME),
    ("updated_at", _Shown.TIME),
    ("metadata", _Shown.METADATA),
)


def transfer_data(transfer: Any) -> dict[str, Any]:
    """The transfer as the API's Transfer schema shows it, plus ``updated_at``."""
    return {name: _python_value(transfer, name, shown_as) for name, shown_as in _TRANSFER_FIELDS}


def _python_value(transfer: Any, name: str, shown_as: _Shown) -> Any:
    if shown_as is _Shown.METADATA:
        return shown(stored_metadata(transfer))
    value = getattr(transfer, name)
    if value is None or shown_as is _Shown.AS_IS:
        return value
    if shown_as is _Shown.ENUM:
        return value.value
    if shown_as is _Shown.UUID:
        return str(value)
    return value.astimezone(UTC).isoformat()


def transfer_data_sql(alias: str) -> str:
    """``transfer_data`` as a Postgres expression over a row of ``transfers`` named ``alias``: the
    same JSON, so a set-based statement can write the events of many transfers. Timestamps as
    Python's isoformat writes them in UTC (no fraction when it is zero)."""
    fields = ", ".join(f"'{name}', {_sql_value(alias, name, shown_as)}" for name, shown_as in _TRANSFER_FIELDS)
    return f"jsonb_build_object({fields})"


def _sql_value(alias: str, name: str, shown_as: _Shown) -> str:
    column = f"{alias}.{name}"
    if shown_as is _Shown.METADATA:
        return f"COALESCE({column}, CAST('{{}}' AS jsonb))"
    if shown_as is not _Shown.TIME:
        return column  # jsonb_build_object writes an enum's label and a uuid as strings
    utc = f"({column} AT TIME ZONE 'UTC')"
    fraction = (
        f"CASE WHEN CAST(extract(microseconds FROM {column}) AS bigint) % 1000000 = 0 THEN ''"
        f" ELSE to_char({utc}, '.US') END"
    )
    return f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') || {fraction} || '+00:00'"""
