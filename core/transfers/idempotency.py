"""Idempotency keys: same user + key + body gives the same transfer; another body is refused."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import IdempotencyKeyRequired, IdempotencyKeyReused
from core.models import Transfer, TransferKind

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class MoneyMovement:
    """What a caller asks to move. Never includes the PIN: the hash is stored."""

    source_account_id: uuid.UUID | None
    destination_account_id: uuid.UUID
    amount: int
    currency: str
    reference: str | None
    # A hold reserves the amount until captured, voided or expired (core.transfers.holds).
    hold: bool = False
    hold_expires_in_seconds: int | None = None
    metadata: dict[str, str] | None = None  # core/metadata.py; None: none


def validate_key(key: str | None) -> str:
    if key is None or not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise IdempotencyKeyRequired(
            f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} printable characters is required"
        )
    return key


def fingerprint(kind: TransferKind, movement: MoneyMovement) -> str:
    fields = asdict(movement)
    if not movement.hold:  # keys bound before holds existed keep their hash
        del fields["hold"], fields["hold_expires_in_seconds"]
    metadata = fields.pop("metadata")
    body = {"kind": kind.value, **{k: str(v) if v is not None else None for k, v in fields.items()}}
    if metadata:  # likewise: a request without metadata hashes as before metadata existed
        body["metadata"] = metadata
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_replay(session: Session, user_id: uuid.UUID, key: str, request_hash: str) -> Transfer | None:
    """The transfer already bound to this key, or None; a different body under the key is a 422."""
    existing = session.scalar(select(Transfer).where(Transfer.initiated_by == user_id, Transfer.idempotency_key == key))
    if existing is not None and existing.request_hash != request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return existing
