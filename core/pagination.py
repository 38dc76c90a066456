"""Keyset (cursor) pagination, newest first: stable under inserts, one cursor format for every list.

A list names its sort keys (columns, unique together, all descending); the cursor is the keys'
names, then the last row's values of those keys, base64url JSON. It is opaque to clients and
checked against the keys' names and types when it comes back, so a damaged cursor, or one from a
list with other keys, is a 422.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, Select, SmallInteger, literal, tuple_
from sqlalchemy.types import TypeEngine

from core.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 100
Keys = Sequence[Any]  # mapped columns (``Model.created_at``), compared and ordered as a row value


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def newest_first(model: Any) -> Keys:
    """The usual keys: creation time, then id to break ties."""
    return (model.created_at, model.id)


def encode_cursor(values: Sequence[datetime | uuid.UUID | int], keys: Keys) -> str:
    raw = json.dumps([_tag(keys), *(v if isinstance(v, int) else str(v) for v in values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _tag(keys: Keys) -> str:
    # Names the list's keys, so that one list's cursor is refused by another whose keys have the
    # same types (ledger entries and audit rows are both keyed by one integer).
    return ",".join(f"{k.table.name}.{k.key}" for k in keys)


def decode_cursor(cursor: str, keys: Keys) -> list[Any]:
    """The key values a cursor carries, typed as its keys' columns; ValidationFailed (422) otherwise."""
    try:
        tagged = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(tagged, list) or len(tagged) != len(keys) + 1 or tagged[0] != _tag(keys):
            raise ValueError("cursor does not fit this list")
        values = tagged[1:]
        return [_load(key.type, value) for key, value in zip(keys, values, strict=True)]
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValidationFailed("invalid cursor", errors={"cursor": ["Invalid cursor."]}) from exc


def _load(column_type: TypeEngine[Any], value: Any) -> Any:
    python_type = column_type.python_type
    if python_type is int:
        if type(value) is not int:  # bool is an int too
            raise TypeError("not an integer")
        if not -_int_bound(column_type) <= value < _int_bound(column_type):
            # Postgres would refuse the comparison's literal (out of range for its type): a 500.
            raise ValueError("integer out of range for this key")
        return value
    if not isinstance(value, str):
        raise TypeError("not a string")
    if python_type is datetime:
        loaded = datetime.fromisoformat(value)
        if loaded.tzinfo is None:
            raise ValueError("naive timestamp")
        return loaded
    if python_type is uuid.UUID:
        return uuid.UUID(value)
    raise TypeError(f"no cursor form for {python_type.__name__} keys")


def _int_bound(column_type: TypeEngine[Any]) -> int:
    """2 ** (bits - 1) of the column's integer type (BigInteger is an Integer, so it goes first)."""
    if isinstance(column_type, BigInteger):
        return 2**63
    if isinstance(column_type, SmallInteger):
        return 2**15
    return 2**31


def paginate(session: Any, stmt: Select[Any], keys: Keys, cursor: str | None, limit: int) -> Page[Any]:
    """Run ``stmt`` for one page of rows, ordered by ``keys`` descending, after ``cursor``."""
    if cursor:
        after = decode_cursor(cursor, keys)
        stmt = stmt.where(tuple_(*keys) < tuple_(*(literal(v, k.type) for k, v in zip(keys, after, strict=True))))
    rows = list(session.scalars(stmt.order_by(*(k.desc() for k in keys)).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([getattr(rows[-1], k.key) for k in keys], keys) if more and rows else None
    return Page(items=rows, next_cursor=next_cursor)
