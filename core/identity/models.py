"""Security state kept in Postgres: trusted devices and the login lockout."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, insert_stamp


class TrustedDevice(Base):
    """A device the user proved with an OTP code: logins from it skip the OTP step."""

    __tablename__ = "trusted_devices"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    device_id: Mapped[str] = mapped_column(String(128))
    trusted_at: Mapped[datetime] = insert_stamp()
    last_seen_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (UniqueConstraint("user_id", "device_id", name="uq_trusted_devices_user_device"),)


class LoginThrottle(Base):
    """Failed logins, so a lockout holds across API processes and restarts.

    Two rows per email (core/identity/lockout.py): one for the email from one client address
    and one email-wide. Keyed by digests whether or not a user has the email: an unknown
    email locks exactly like a real one, so the lockout does not reveal who is registered.
    """

    __tablename__ = "login_throttles"

    throttle_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    email_digest: Mapped[str] = mapped_column(String(64), index=True)  # every row of one email, to unlock it
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("failed_attempts >= 0", name="failed_attempts_nonneg"),)


class RevokedToken(Base):
    """A revocation, kept in Postgres until the token it names would have expired anyway.

    ``kind``: ``access`` (a logged-out access token, by ``jti``), ``family`` (every token of
    one login, by ``fam``) or ``refresh_used`` (a refresh token already exchanged, by ``jti``).
    """

    __tablename__ = "revoked_tokens"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[datetime] = insert_stamp()

    __table_args__ = (CheckConstraint("kind IN ('access', 'family', 'refresh_used')", name="revoked_token_kind"),)
