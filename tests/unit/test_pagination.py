"""One cursor format for every list: the last row's sort keys, typed by the list's columns."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from core.errors import ValidationFailed
from core.models import AuditLog, LedgerEntry, Transfer
from core.pagination import decode_cursor, encode_cursor, newest_first

T = "transfers.created_at,transfers.id"  # the transfers list's tag


def raw(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_a_cursor_round_trips_each_key_type() -> None:
    at, id_ = datetime(2026, 11, 27, 5, 30, 1, 123456, tzinfo=UTC), uuid.uuid4()
    cursor = encode_cursor([at, id_], newest_first(Transfer))
    assert "=" not in cursor and str(id_) not in cursor  # opaque, URL-safe
    assert decode_cursor(cursor, newest_first(Transfer)) == [at, id_]
    assert decode_cursor(encode_cursor([2**53 - 1], (AuditLog.id,)), (AuditLog.id,)) == [2**53 - 1]
    assert decode_cursor(encode_cursor([7], (LedgerEntry.seq,)), (LedgerEntry.seq,)) == [7]


@pytest.mark.parametrize(
    ("cursor", "keys"),
    [
        ("%%%", newest_first(Transfer)),
        ("123", (AuditLog.id,)),  # the old bare-id audit cursor
        (raw([T, "2026-11-27T05:30:00+00:00"]), newest_first(Transfer)),  # too few keys
        (raw([T, "2026-11-27T05:30:00", str(uuid.uuid4())]), newest_first(Transfer)),  # naive time
        (raw([T, "2026-11-27T05:30:00+00:00", "not-a-uuid"]), newest_first(Transfer)),
        (raw(["2026-11-27T05:30:00+00:00", str(uuid.uuid4())]), newest_first(Transfer)),  # untagged
        (raw(["audit_log.id", True]), (AuditLog.id,)),
        (raw(["audit_log.id", "7"]), (AuditLog.id,)),
        (raw({"id": 7}), (AuditLog.id,)),
        (encode_cursor([7], (AuditLog.id,)), newest_first(Transfer)),  # another list's cursor
        (encode_cursor([7], (LedgerEntry.seq,)), (AuditLog.id,)),  # the same key types, another list
        (encode_cursor([datetime.now(UTC), uuid.uuid4()], newest_first(Transfer)), (AuditLog.id,)),
    ],
)
def test_a_bad_or_foreign_cursor_is_a_validation_error(cursor: str, keys: object) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor, keys)  # type: ignore[arg-type]
    assert refused.value.extra == {"errors": {"cursor": ["Invalid cursor."]}}
