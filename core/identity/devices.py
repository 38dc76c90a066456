"""Trusted devices: a device proven once with an OTP code skips the OTP step until revoked."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.errors import NotFound
from core.identity.models import TrustedDevice


def is_trusted(session: Session, *, user_id: uuid.UUID, device_id: str | None) -> bool:
    """True if ``device_id`` is trusted for the user (reads only)."""
    if not device_id:
        return False
    return (
        session.scalar(
            select(TrustedDevice.id).where(TrustedDevice.user_id == user_id, TrustedDevice.device_id == device_id)
        )
        is not None
    )


def seen_trusted(session: Session, *, user_id: uuid.UUID, device_id: str | None, now: datetime) -> bool:
    """True if ``device_id`` is trusted for the user; a trusted device's ``last_seen_at`` moves to ``now``."""
    if not device_id:
        return False
    device = session.scalar(
        select(TrustedDevice).where(TrustedDevice.user_id == user_id, TrustedDevice.device_id == device_id)
    )
    if device is None:
        return False
    device.last_seen_at = now
    return True


def trust(
    session: Session, *, user_id: uuid.UUID, device_id: str, now: datetime, request_id: str | None = None
) -> None:
    """Trust a device (idempotent: trusting it again only refreshes ``last_seen_at``).

    The audit row names the device by its row id, not by ``device_id``: a trusted device id
    is half of what skips the OTP step, so it stays out of the permanent trail.
    """
    row_id = session.execute(
        insert(TrustedDevice)
        .values(id=uuid.uuid4(), user_id=user_id, device_id=device_id, trusted_at=now, last_seen_at=now)
        .on_conflict_do_update(constraint="uq_trusted_devices_user_device", set_={"last_seen_at": now})
        .returning(TrustedDevice.id)
    ).scalar_one()
    audit.record(
        session,
        action="device.trusted",
        entity_type="user",
        entity_id=user_id,
        actor_id=user_id,
        request_id=request_id,
        details={"trusted_device_id": str(row_id)},
    )


def list_trusted(session: Session, user_id: uuid.UUID) -> Sequence[TrustedDevice]:
    return session.scalars(
        select(TrustedDevice).where(TrustedDevice.user_id == user_id).order_by(TrustedDevice.trusted_at.desc())
    ).all()


def revoke(session: Session, *, user_id: uuid.UUID, id: uuid.UUID, request_id: str | None = None) -> None:
    """Forget a trusted device: its next login needs an OTP code again. Someone else's device is a 404."""
    deleted = session.scalar(
        delete(TrustedDevice)
        .where(TrustedDevice.id == id, TrustedDevice.user_id == user_id)
        .returning(TrustedDevice.id)
    )
    if deleted is None:
        raise NotFound("device not found")
    audit.record(
        session,
        action="device.revoked",
        entity_type="user",
        entity_id=user_id,
        actor_id=user_id,
        request_id=request_id,
        details={"trusted_device_id": str(id)},
    )
