"""A schedule (what to move and when) and its runs (one per occurrence, with its transfer)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, enum_column, insert_stamp, update_stamp
from core.money import MAX_AMOUNT


class ScheduleStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"
    FINISHED = "FINISHED"


class ShortFundsPolicy(enum.StrEnum):
    FAIL = "fail"  # the occurrence FAILED, the schedule PAUSED
    RETRY = "retry"  # hourly until the end of the occurrence's UTC day, then FAILED
    SKIP = "skip"  # the occurrence SKIPPED, the schedule goes on


class RunStatus(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class ScheduledTransfer(Base):
    __tablename__ = "scheduled_transfers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    source_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    destination_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(140))
    # Given to each run's transfer (core/metadata.py); ``metadata`` is taken on a declarative class.
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSONB(none_as_null=True))
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rrule: Mapped[str | None] = mapped_column(Text)  # None: once, at start_at
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    count: Mapped[int | None] = mapped_column(Integer)
    on_insufficient_funds: Mapped[ShortFundsPolicy] = mapped_column(
        enum_column(ShortFundsPolicy, "short_funds_policy", length=8)
    )
    status: Mapped[ScheduleStatus] = mapped_column(
        enum_column(ScheduleStatus, "schedule_status"), default=ScheduleStatus.ACTIVE
    )
    # The next occurrence to materialise; None when no occurrence is left.
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_scheduled_transfers_idempotency"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"amount <= {MAX_AMOUNT}", name="amount_json_safe"),
        CheckConstraint("source_account_id <> destination_account_id", name="distinct_accounts"),
        # The materialiser's scan: active schedules by their next occurrence.
        Index("ix_scheduled_transfers_due", "next_run_at", postgresql_where="status = 'ACTIVE'"),
        Index("ix_scheduled_transfers_user_created", "user_id", "created_at", "id"),
    )


class ScheduledRun(Base):
    """One occurrence of a schedule: exactly one row per (schedule, occurrence), made in the
    transaction that creates its transfer."""

    __tablename__ = "scheduled_transfer_runs"

    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scheduled_transfers.id"), primary_key=True)
    occurrence: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # The latest attempt's transfer (a retry makes a new one; the earlier ones stay FAILED).
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus, "run_status"), default=RunStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # A retry (policy "retry") is due then: the run waits with no transfer in flight.
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    __table_args__ = (
        Index("ix_scheduled_transfer_runs_pending", "schedule_id", postgresql_where="status = 'PENDING'"),
        Index("ix_scheduled_transfer_runs_transfer", "transfer_id"),
    )
