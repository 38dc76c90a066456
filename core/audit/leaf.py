"""What a sealed audit row's hashes cover: the leaf a client recomputes, and the hidden context.

Leaf version 2 (batches sealed from migration 0016 on):

* ``row_hash`` = SHA-256 of the RFC 8785 canonical JSON of the record exactly as
  ``GET /transfers/{id}/audit`` returns it: ``{seq, action, occurred_at, details}``, with
  ``occurred_at`` written by ``timestamp()``. A client recomputes it from what it reads, so a
  record with any field changed no longer leads to its root.
* ``context_hash`` = SHA-256 of what the API does not show (the actor, the entity, the request
  id: they may be the other party's), bound to the row by ``seq``, as a JSON array in a fixed
  order. The batch commits to these through a second Merkle tree (``context_root``), so a changed
  actor or entity breaks the root as a changed amount does, while a client sees only that tree's
  root. No client recomputes it, so it need not be RFC 8785: an array of strings, an integer and
  nulls has one JSON text already, and the standard library writes it in a tenth of the time
  (``rfc8785`` was two thirds of the sealer's time).

Leaf version 1 (batches sealed before): ``row_hash = audit_row_hash(...)`` in SQL (migration
0002) over every column and the previous row's hash, which the API does not return: such a
row is verifiable by the server (``verify-audit``) only; a client can check its proof, not its
content.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import rfc8785

LEAF_VERSION = 2
# The fields of an item of GET /transfers/{id}/audit that are not hashed into its row_hash.
NOT_HASHED = ("row_hash", "sealed_batch", "proof")


def timestamp(moment: datetime) -> str:
    """The one text form of an audit row's time, in the record and its hash: UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def record(*, seq: int | None, action: str, occurred_at: datetime, details: dict[str, Any]) -> dict[str, Any]:
    """The hashed fields of an audit row, as the API returns them."""
    return {"seq": seq, "action": action, "occurred_at": timestamp(occurred_at), "details": details}


def row_hash(fields: dict[str, Any]) -> str:
    """Hex SHA-256 of the RFC 8785 canonical JSON of ``fields`` (the record, without NOT_HASHED)."""
    return hashlib.sha256(rfc8785.dumps(fields)).hexdigest()


def context_hash(
    *, seq: int, actor_id: uuid.UUID | None, entity_type: str, entity_id: str | None, request_id: str | None
) -> str:
    """Hex SHA-256 of a row's fields that the API does not show, as a JSON array in this order."""
    fields = [seq, str(actor_id) if actor_id is not None else None, entity_type, entity_id, request_id]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
