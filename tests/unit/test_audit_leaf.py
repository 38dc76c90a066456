"""The audit leaf (core/audit/leaf.py): the time is one text whatever the zone it was read in, and
the context hash is one JSON array."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

from core.audit import leaf


def test_the_time_is_one_text_whatever_the_zone() -> None:
    """The sealer's connection and the API's may read timestamptz in other zones: the hash must not move."""
    moment = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=-5)))
    assert leaf.timestamp(moment) == leaf.timestamp(elsewhere) == "2026-12-03T09:30:00.000000+00:00"
    record = leaf.record(seq=7, action="a", occurred_at=elsewhere, details={"amount": 1})
    assert record["occurred_at"] == "2026-12-03T09:30:00.000000+00:00"


def test_the_context_hash_is_of_one_json_array() -> None:
    actor = uuid.UUID(int=5)
    text = f'[3,"{actor}","transfer","é",null]'.encode()
    expected = hashlib.sha256(text).hexdigest()
    got = leaf.context_hash(seq=3, actor_id=actor, entity_type="transfer", entity_id="é", request_id=None)
    assert got == expected
