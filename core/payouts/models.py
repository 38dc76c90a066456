"""A customer's counterparty at another bank: an IBAN, or a US account and routing number."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base


class Counterparty(Base):
    __tablename__ = "counterparties"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(140))
    iban: Mapped[str | None] = mapped_column(String(34))  # compact form, checked by schwifty
    # Kept whole for the payment file; the API shows only its last four digits.
    account_number: Mapped[str | None] = mapped_column(String(17))
    routing_number: Mapped[str | None] = mapped_column(String(9))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "(iban IS NOT NULL) <> (account_number IS NOT NULL AND routing_number IS NOT NULL)",
            name="one_destination",
        ),
        Index("ix_counterparties_user_created", "user_id", "created_at", "id"),
    )

    @property
    def account_number_last4(self) -> str | None:
        return self.account_number[-4:] if self.account_number else None
