"""SQLAlchemy 2 typed models. Postgres is the source of truth for every balance."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.money import MAX_AMOUNT

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def enum_column(cls: type[enum.Enum], name: str, length: int = 16) -> Enum:
    """Stored by value as VARCHAR + CHECK: readable in SQL, easy to extend in a migration."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


class KycStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class UserStatus(enum.StrEnum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class AccountKind(enum.StrEnum):
    CUSTOMER = "CUSTOMER"
    SETTLEMENT = "SETTLEMENT"  # the bank's own side of deposits; may go negative
    # The bank's: payouts accepted and not yet settled by the correspondent (core/payouts).
    IN_TRANSIT = "IN_TRANSIT"


class AccountStatus(enum.StrEnum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


class TransferKind(enum.StrEnum):
    TRANSFER = "TRANSFER"
    DEPOSIT = "DEPOSIT"
    REFUND = "REFUND"
    # A statement line's effect on a payout (core/reconciliation/payout_moves.py): in-transit to
    # settlement when it settled, back to the customer when it was returned.
    PAYOUT_SETTLE = "PAYOUT_SETTLE"
    PAYOUT_RETURN = "PAYOUT_RETURN"


class TransferStatus(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    HELD = "HELD"  # funds reserved (accounts.held_amount); captured, voided or expired later
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


def insert_stamp() -> Mapped[datetime]:
    """``created_at`` and the like: a timezone-aware time the database sets when the row is
    inserted (``now()``, the transaction's start). Every model declares its stamps with these two."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def update_stamp() -> Mapped[datetime]:
    """``updated_at``: set by the database on insert and by the ORM (``now()``) on every update."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_column(Role, "user_role"), default=Role.CUSTOMER)
    kyc_status: Mapped[KycStatus] = mapped_column(enum_column(KycStatus, "kyc_status"), default=KycStatus.PENDING)
    status: Mapped[UserStatus] = mapped_column(enum_column(UserStatus, "user_status"), default=UserStatus.INACTIVE)
    pin_hash: Mapped[str | None] = mapped_column(Text)
    pin_failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pin_locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    otp_enabled: Mapped[bool] = mapped_column(default=False, server_default="false")
    # Every token carries the generation it was issued under; bumping it (password change)
    # revokes all of the user's tokens at once, in every API process, across restarts.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    accounts: Mapped[list[Account]] = relationship(back_populates="user")

    __table_args__ = (
        CheckConstraint("pin_failed_attempts >= 0", name="pin_attempts_nonneg"),
        # The admin's user list, newest first, whole or by KYC status (core/identity/users.py).
        Index("ix_users_created_id", "created_at", "id"),
        Index("ix_users_kyc_status_created", "kyc_status", "created_at", "id"),
    )


_LIMITS = ("per_transfer", "daily_outgoing", "monthly_outgoing")  # core/accounts/limits.py


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[AccountKind] = mapped_column(enum_column(AccountKind, "account_kind"), default=AccountKind.CUSTOMER)
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Sum of the account's open holds (transfers HELD from it): available = balance - held_amount.
    held_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status: Mapped[AccountStatus] = mapped_column(
        enum_column(AccountStatus, "account_status"), default=AccountStatus.INACTIVE
    )
    # Spend controls (core/accounts/limits.py, credit.py): available = balance - held + credit_limit.
    credit_limit: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Set when an admin lowers the line below what is drawn, cleared once back within: by the
    # trigger accounts_credit_line_state (migration 0015), whoever writes the balance.
    over_credit_line: Mapped[bool] = mapped_column(default=False, server_default="false")
    # The bank's caps and the owner's own limits; the one in force is the lower (NULL: none).
    bank_per_transfer: Mapped[int | None] = mapped_column(BigInteger)
    bank_daily_outgoing: Mapped[int | None] = mapped_column(BigInteger)
    bank_monthly_outgoing: Mapped[int | None] = mapped_column(BigInteger)
    own_per_transfer: Mapped[int | None] = mapped_column(BigInteger)
    own_daily_outgoing: Mapped[int | None] = mapped_column(BigInteger)
    own_monthly_outgoing: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()

    # The client's own keys and values (core/metadata.py); NULL: none. PATCH /accounts/{id}.
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSONB(none_as_null=True))

    user: Mapped[User | None] = relationship(back_populates="accounts")

    __table_args__ = (
        *(
            CheckConstraint(f"{c} IS NULL OR {c} BETWEEN 0 AND {MAX_AMOUNT}", name=f"{c}_range")
            for c in (f"{owner}_{limit}" for owner in ("bank", "own") for limit in _LIMITS)
        ),
        CheckConstraint(f"credit_limit BETWEEN 0 AND {MAX_AMOUNT}", name="credit_limit_range"),
        CheckConstraint("credit_limit = 0 OR kind = 'CUSTOMER'", name="credit_line_customers_only"),
        # The books' own guard of every credit line, whichever path writes the balance.
        CheckConstraint(
            "kind = 'SETTLEMENT' OR over_credit_line OR balance - held_amount + credit_limit >= 0",
            name="within_credit_line",
        ),
        # Every JSON client reads a balance exactly (API.md): a write past this fails, never a client's parse.
        CheckConstraint(f"balance BETWEEN -{MAX_AMOUNT} AND {MAX_AMOUNT}", name="balance_json_safe"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("held_amount >= 0", name="held_nonneg"),
        CheckConstraint("(kind IN ('SETTLEMENT', 'IN_TRANSIT')) = (user_id IS NULL)", name="owner_matches_kind"),
        # One settlement account per currency.
        Index(
            "uq_accounts_settlement_currency",
            "currency",
            unique=True,
            postgresql_where="kind = 'SETTLEMENT'",
        ),
        # One in-transit account per currency.
        Index("uq_accounts_in_transit_currency", "currency", unique=True, postgresql_where="kind = 'IN_TRANSIT'"),
    )


class AccountUsage(Base):
    """An account's outgoing use in one UTC day or month (core/accounts/usage.py): a running
    total written under the account's row lock, in the transaction that changes what it counts."""

    __tablename__ = "account_usage"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(5), primary_key=True)  # DAY | MONTH
    starts_on: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("period IN ('DAY', 'MONTH')", name="period_kind"),
        CheckConstraint("used >= 0", name="used_nonneg"),
    )


class BalanceMonitor(Base):
    """An owner's condition on an account's balance or available balance (core/accounts/monitors.py)."""

    __tablename__ = "balance_monitors"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    field: Mapped[str] = mapped_column(String(17))
    operator: Mapped[str] = mapped_column(String(3))
    value: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = insert_stamp()
    last_triggered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("field IN ('balance', 'available_balance')", name="field_kind"),
        CheckConstraint("operator IN ('lt', 'lte', 'gt', 'gte')", name="operator_kind"),
        CheckConstraint(f"value BETWEEN -{MAX_AMOUNT} AND {MAX_AMOUNT}", name="value_json_safe"),
    )


class TransferBatch(Base):
    """One POST /transfers/batch request; atomic batches settle all together or all fail."""

    __tablename__ = "transfer_batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    atomic: Mapped[bool] = mapped_column()
    item_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (CheckConstraint("item_count BETWEEN 1 AND 1000", name="item_count_range"),)


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[TransferKind] = mapped_column(enum_column(TransferKind, "transfer_kind"))
    initiated_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # Indexed by ix_transfers_{source,destination}_status_created (they lead with the account).
    source_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    destination_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(140))
    status: Mapped[TransferStatus] = mapped_column(
        enum_column(TransferStatus, "transfer_status"), default=TransferStatus.PENDING
    )
    failure_code: Mapped[str | None] = mapped_column(String(64))
    # The limit a LIMIT_EXCEEDED (or a credit line's INSUFFICIENT_FUNDS) broke:
    # {limit, limit_amount, used, requested}.
    failure_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = insert_stamp()
    updated_at: Mapped[datetime] = update_stamp()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Last time the sweeper re-published it: at most one re-publish per age window, so a
    # long queue backlog is not flooded with duplicates of the same transfers.
    requeued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How often the sweeper re-published it: past the cap it is parked (alerted), not nudged forever.
    requeue_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Settlement partition (core.transfers.routing): a function of the source account.
    partition: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    hold: Mapped[bool] = mapped_column(default=False, server_default="false")
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    captured_amount: Mapped[int | None] = mapped_column(BigInteger)
    refund_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transfers.id"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transfer_batches.id"))
    # The client's own keys and values (core/metadata.py); NULL: none. ``metadata`` is taken on a
    # declarative class, hence the attribute's name; the column's is ``metadata``.
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSONB(none_as_null=True))

    __table_args__ = (
        UniqueConstraint("initiated_by", "idempotency_key", name="uq_transfers_idempotency"),
        CheckConstraint("NOT hold OR hold_expires_at IS NOT NULL", name="hold_has_expiry"),
        CheckConstraint(
            "captured_amount IS NULL OR (captured_amount > 0 AND captured_amount <= amount)",
            name="captured_within_amount",
        ),
        CheckConstraint("(kind = 'REFUND') = (refund_of IS NOT NULL)", name="refund_kind"),
        Index("ix_transfers_refund_of", "refund_of", postgresql_where="refund_of IS NOT NULL"),
        Index("ix_transfers_batch_id", "batch_id", postgresql_where="batch_id IS NOT NULL"),
        # GET /transfers?metadata[KEY]=VALUE (``@>``); transfers without metadata are not in it.
        Index(
            "ix_transfers_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
            postgresql_where="metadata IS NOT NULL",
        ),
        # The expiry sweep's scan: open holds by expiry.
        Index("ix_transfers_held_expiry", "hold_expires_at", postgresql_where="status = 'HELD'"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"amount <= {MAX_AMOUNT}", name="amount_json_safe"),
        CheckConstraint("source_account_id <> destination_account_id", name="distinct_accounts"),
        CheckConstraint("(status = 'FAILED') = (failure_code IS NOT NULL)", name="failure_code_iff_failed"),
        # The sweeper's scan: oldest PENDING first.
        Index("ix_transfers_pending_created", "created_at", postgresql_where="status = 'PENDING'"),
        # A partition drainer's scan: its PENDING transfers in accept order.
        Index("ix_transfers_pending_partition", "partition", "created_at", "id", postgresql_where="status = 'PENDING'"),
        Index("ix_transfers_created_id", "created_at", "id"),
        # The lists' keyset ranges (core/transfers/queries.py): an admin's status filter, and one
        # account's transfers per side and status, each in the lists' (created_at, id) order.
        Index("ix_transfers_status_created", "status", "created_at", "id"),
        Index("ix_transfers_source_status_created", "source_account_id", "status", "created_at", "id"),
        Index("ix_transfers_destination_status_created", "destination_account_id", "status", "created_at", "id"),
    )


class HoldAction(enum.StrEnum):
    CAPTURE = "CAPTURE"
    VOID = "VOID"
    EXPIRE = "EXPIRE"


class TransferAction(Base):
    """How a hold ended: its capture, void or expiry. At most one per transfer (the unique
    transfer_id), so racing captures, voids and the expiry sweep give exactly one outcome; a
    capture or void is bound to its caller's Idempotency-Key like a transfer is."""

    __tablename__ = "transfer_actions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transfers.id"), unique=True)
    action: Mapped[HoldAction] = mapped_column(enum_column(HoldAction, "hold_action"))
    amount: Mapped[int] = mapped_column(BigInteger)  # captured (CAPTURE) or released (VOID, EXPIRE)
    initiated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))  # NULL: the expiry sweep
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (
        UniqueConstraint("initiated_by", "idempotency_key", name="uq_transfer_actions_idempotency"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "(action = 'EXPIRE') = (initiated_by IS NULL)"
            " AND (initiated_by IS NULL) = (idempotency_key IS NULL)"
            " AND (idempotency_key IS NULL) = (request_hash IS NULL)",
            name="requested_by_caller",
        ),
    )


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transfers.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: debit < 0 < credit
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = insert_stamp()
    # Drawn at insert, under the account's row lock: per account, the order the entries were
    # applied in (balance_after chains along it). created_at is the transaction's start: one
    # batch's entries share it, and a transaction that waited for the lock may have started first.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))

    __table_args__ = (
        # A transfer touches an account at most once: a second settlement cannot post again.
        UniqueConstraint("transfer_id", "account_id", name="uq_ledger_entries_transfer_account"),
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_ledger_entries_account_created", "account_id", "created_at", "id"),
        Index("ix_ledger_entries_account_seq", "account_id", "seq", unique=True),
    )


class AuditLog(Base):
    """Append-only: a database trigger rejects UPDATE, DELETE and TRUNCATE."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = insert_stamp()
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # The inserting transaction (xid8 as bigint), set by the database; never by the app. The
    # sealer chains a row once its transaction is below the xmin horizon (core/audit/seal.py).
    # Rows chained before migration 0006 have 0.
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"))

    __table_args__ = (
        Index("ix_audit_log_entity_id", "entity_id"),
        Index("ix_audit_log_action", "action"),
        Index("ix_audit_log_txid_id", "txid", "id"),  # the unsealed rows: txid >= last horizon
    )


class AuditSealBatch(Base):
    """One sealer run: the seals first_seq..last_seq, the Merkle root of their row hashes and a
    root chaining the batches (core/audit/merkle.py, by leaf_version). Append-only by trigger.

    ``id`` is the ``n`` of GET /audit/roots/{n}: the sealer gives the next batch the last id + 1."""

    __tablename__ = "audit_seal_batches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    first_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    # Every audit row with txid below this was sealed by this batch or an earlier one.
    horizon: Mapped[int] = mapped_column(BigInteger)
    merkle_root: Mapped[str] = mapped_column(String(64))
    prev_root: Mapped[str | None] = mapped_column(String(64))  # NULL for the first batch
    root: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = insert_stamp()
    # How the batch's row hashes and root are made (core/audit/leaf.py); 1 before migration 0016.
    leaf_version: Mapped[int] = mapped_column(SmallInteger)
    # Version 2: the Merkle root of the rows' context hashes (what the API does not show).
    context_root: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("last_seq >= first_seq", name="seq_range"),
        CheckConstraint("leaf_version IN (1, 2) AND (leaf_version = 1) = (context_root IS NULL)", name="leaf_version"),
    )


class AuditSeal(Base):
    """An audit row's place in the hash chain, written by the sealer only. Append-only by trigger.

    Leaf version 1: row_hash = audit_row_hash(seq, the audit row's content, prev_hash) (migration
    0002). Version 2: row_hash and context_hash as core/audit/leaf.py defines them, prev_hash NULL."""

    __tablename__ = "audit_seals"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    audit_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_log.id"), unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_seal_batches.id"))
    context_hash: Mapped[str | None] = mapped_column(String(64))  # leaf version 2

    __table_args__ = (Index("ix_audit_seals_batch_id", "batch_id"),)


class AuditVerifyCheckpoint(Base):
    """Where the last intact verify-audit pass ended (migration 0024): ``--incremental`` rechecks
    this batch's root and link and proves only the batches after it; a full pass ignores it."""

    __tablename__ = "audit_verify_checkpoints"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(64))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    full_pass: Mapped[bool] = mapped_column(Boolean)
    verified_at: Mapped[datetime] = insert_stamp()


class ReconcileCheckpoint(Base):
    """A clean reconcile pass (migration 0026): every transaction below ``horizon`` (its snapshot's
    xmin) was checked, so ``reconcile --incremental`` checks only what audit rows at or above it
    name (core/reconcile.py); a full pass ignores it."""

    __tablename__ = "reconcile_checkpoints"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    horizon: Mapped[int] = mapped_column(BigInteger)
    full_pass: Mapped[bool] = mapped_column(Boolean)
    accounts_checked: Mapped[int] = mapped_column(BigInteger)
    transfers_checked: Mapped[int] = mapped_column(BigInteger)
    checked_at: Mapped[datetime] = insert_stamp()
