"""Webhook tables: endpoints, deliveries of domain events (core.events) per endpoint, and their attempts."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from core.events import EventType
from core.models import Base, enum_column, insert_stamp, update_stamp


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return enum_column(cls, name, length=32)  # event names are longer than 16


class WebhookEndpoint(Base):
    """A partner's receiver URL. Secrets are Fernet ciphertexts, never the plain ``whsec_…``."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # After a rotation the old secret still signs (a second signature) until it expires.
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    __table_args__ = (CheckConstraint("cardinality(events) > 0", name="events_nonempty"),)


class WebhookDelivery(Base):
    """One event to one endpoint; ``next_attempt_at`` drives retries (and leases an attempt in flight)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # No foreign key: webhook_events is partitioned (its keys include occurred_at, migration 0028).
    # The relay and the replay insert deliveries only for events they read, and the retention
    # task deletes a day's deliveries before it drops the day (core/events_partitions.py).
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # The rest of the event's key (migration 0029): the worker's lookup then reads one partition.
    # None for deliveries made before it, found by event_id alone.
    event_occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_type: Mapped[EventType] = mapped_column(_enum(EventType, "webhook_delivery_event_type"))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.PENDING
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # attempts started
    response_status: Mapped[int | None] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Internal: queued to a worker until then, so the dispatcher does not queue it again meanwhile.
    queued_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        CheckConstraint("attempt >= 0", name="attempt_nonneg"),
        CheckConstraint("(status = 'PENDING') = (next_attempt_at IS NOT NULL)", name="next_attempt_iff_pending"),
        # The dispatcher's scan: pending deliveries by due time.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where="status = 'PENDING'"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
        # A slot holder's scan (core.webhooks.delivery.claim_next): one endpoint's due deliveries.
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where="status = 'PENDING'",
        ),
    )


class WebhookDeliveryAttempt(Base):
    """One HTTP attempt: what the receiver answered (or why there was no answer), and how fast."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    response_body: Mapped[str | None] = mapped_column(Text)  # truncated to RESPONSE_BODY_LIMIT
    created_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (CheckConstraint("duration_ms >= 0", name="duration_nonneg"),)
