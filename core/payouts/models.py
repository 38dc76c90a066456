"""A customer's counterparty at another bank (an IBAN, or a US account and routing number), the
payouts sent to counterparties and the pain.001 files that carry them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, enum_column, insert_stamp, update_stamp
from core.money import MAX_AMOUNT


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
    created_at: Mapped[datetime] = insert_stamp()

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


class PayoutStatus(enum.StrEnum):
    """PENDING until its file is made (SENT), then SETTLED or RETURNED by the correspondent's
    statement (core/reconciliation). FAILED: its transfer failed (read from the transfer:
    core/payouts/payouts.py ``shown_status``), so nothing left the customer."""

    PENDING = "PENDING"
    SENT = "SENT"
    SETTLED = "SETTLED"
    RETURNED = "RETURNED"
    FAILED = "FAILED"


PAIN_001 = "pain.001.001.03"


class PayoutFile(Base):
    """One ISO 20022 credit-transfer file (pain.001.001.03) of one currency's payouts, as sent."""

    __tablename__ = "payout_files"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    currency: Mapped[str] = mapped_column(String(3))
    format: Mapped[str] = mapped_column(String(32), default=PAIN_001)
    payout_count: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(BigInteger)  # minor units, the sum of its payouts
    message_id: Mapped[str] = mapped_column(String(35), unique=True)  # GrpHdr/MsgId
    content: Mapped[bytes] = mapped_column(LargeBinary)  # the XML exactly as downloaded
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (
        CheckConstraint("payout_count > 0", name="payout_count_positive"),
        CheckConstraint(f"total BETWEEN 1 AND {MAX_AMOUNT}", name="total_range"),
    )


class Payout(Base):
    """Money to a counterparty at another bank: its transfer moves it from the customer's account
    to the bank's IN_TRANSIT account of the currency; a file sends it (SENT)."""

    __tablename__ = "payouts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    source_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    counterparty_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("counterparties.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(140))
    status: Mapped[PayoutStatus] = mapped_column(
        enum_column(PayoutStatus, "payout_status"), default=PayoutStatus.PENDING
    )
    # pain.001 EndToEndId (Max35Text): the statement's lines name the payout by it.
    end_to_end_id: Mapped[str] = mapped_column(String(35), unique=True)
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transfers.id"), unique=True)
    file_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payout_files.id"))
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    __table_args__ = (
        CheckConstraint(f"amount BETWEEN 1 AND {MAX_AMOUNT}", name="amount_range"),
        # Sent (and whatever follows) means in exactly one file; before that, in none.
        CheckConstraint("(file_id IS NULL) = (status IN ('PENDING', 'FAILED'))", name="file_iff_sent"),
        Index("ix_payouts_user_created", "user_id", "created_at", "id"),
        Index("ix_payouts_created_id", "created_at", "id"),
        Index("ix_payouts_file_id", "file_id", postgresql_where="file_id IS NOT NULL"),
        # A payout file's scan: the currency's PENDING payouts, oldest first.
        Index("ix_payouts_pending_currency", "currency", "created_at", "id", postgresql_where="status = 'PENDING'"),
    )
