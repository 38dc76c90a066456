"""Idempotency keys: same user + key + body gives the same transfer; another body is refused."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.errors import IdempotencyKeyRequired, IdempotencyKeyReused
from core.models import Transfer, TransferKind

MAX_KEY_LENGTH = 255

# A transfer's key is bound by its INSERT: a concurrent duplicate blocks on the unique index
# until the first commits, then does nothing (exactly one row per user and key, whatever the
# interleaving), and ``inserted_or_replay`` answers it with the row that won.
KEY_CONSTRAINT = "uq_transfers_idempotency"
ON_KEY_CONFLICT = f"ON CONFLICT ON CONSTRAINT {KEY_CONSTRAINT} DO NOTHING"

_Row = TypeVar("_Row")
_Replay = TypeVar("_Replay")
_Args = ParamSpec("_Args")


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


def request_fingerprint(body: dict[str, Any]) -> str:
    """The one hash of a request body every idempotent endpoint stores (transfers, deposits,
    refunds, captures and voids, schedules): SHA-256 of its canonical JSON (sorted keys, no
    spaces, ASCII escapes). Stored hashes are compared with it on every replay, so its bytes
    never change (tests/unit/test_idempotency.py holds a digest of each kind of request)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint(kind: TransferKind, movement: MoneyMovement) -> str:
    fields = asdict(movement)
    if not movement.hold:  # keys bound before holds existed keep their hash
        del fields["hold"], fields["hold_expires_in_seconds"]
    metadata = fields.pop("metadata")
    body = {"kind": kind.value, **{k: str(v) if v is not None else None for k, v in fields.items()}}
    if metadata:  # likewise: a request without metadata hashes as before metadata existed
        body["metadata"] = metadata
    return request_fingerprint(body)


def find_bound(
    session: Session, owner: InstrumentedAttribute[Any], user_id: uuid.UUID, key: str, request_hash: str
) -> Any | None:
    """The row already bound to this user's key (``owner``: the key's user column of an entity
    with ``idempotency_key`` and ``request_hash``), or None; a different body under the key is
    a 422. The one replay rule of every idempotent endpoint."""
    entity: Any = owner.class_
    existing = session.scalar(select(entity).where(owner == user_id, entity.idempotency_key == key))
    if existing is not None and existing.request_hash != request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return existing


def find_replay(session: Session, user_id: uuid.UUID, key: str, request_hash: str) -> Transfer | None:
    """The transfer already bound to this key, or None; a different body under the key is a 422."""
    replay: Transfer | None = find_bound(session, Transfer.initiated_by, user_id, key, request_hash)
    return replay


def inserted_or_replay(
    inserted: _Row | None, replay: Callable[_Args, _Replay | None], *args: _Args.args, **kwargs: _Args.kwargs
) -> tuple[_Row | _Replay, bool]:
    """After the INSERT that binds a key (``ON CONFLICT ... DO NOTHING``): the new row and True,
    or, when a concurrent request bound the key first, its row (``replay(*args, **kwargs)``,
    which raises for another body under the key) and False. The insert waited for that request to commit, so
    its row is visible now."""
    if inserted is not None:
        return inserted, True
    found = replay(*args, **kwargs)
    assert found is not None  # the conflicting row is committed and visible now
    return found, False
