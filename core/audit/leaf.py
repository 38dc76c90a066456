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
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
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
    return hashlib.sha256(canonical(fields)).hexdigest()


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value``: rfc8785's bytes (or its error), made by the C
    encoder when the value is plain enough for both to write the same (see below)."""
    if _plain(value):
        try:
            return _CANONICAL_FAST(value).encode()
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 says why
            pass
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """Only str, None, bool, integers within 2^53 - 1, and lists and dicts (ASCII keys) of them:
    exact types, so an Enum or another subclass takes rfc8785."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_SAFE <= value <= _MAX_SAFE
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


def context_hash(
    *, seq: int, actor_id: uuid.UUID | None, entity_type: str, entity_id: str | None, request_id: str | None
) -> str:
    """Hex SHA-256 of a row's fields that the API does not show, as a JSON array in this order."""
    fields = [seq, str(actor_id) if actor_id is not None else None, entity_type, entity_id, request_id]
    return hashlib.sha256(_CONTEXT_FAST(fields).encode()).hexdigest()


# What Postgres writes for ``timestamp()`` of the column ``occurred_at``: the sealer and
# verify-audit read the time as this text, with no datetime made and formatted per row.
TIMESTAMP_SQL = """to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

# ---- the same hashes from the text Postgres returns, in tight loops (sealer, verify-audit) ---
#
# rfc8785 is pure Python (~20 µs a record); the standard library's C encoder writes the same
# bytes when the value holds no float (rfc8785 writes those the ECMAScript way), no integer past
# 2^53 - 1 (rfc8785 refuses those), and only ASCII (rfc8785 sorts keys by UTF-16 code units,
# Python by code points: they differ for characters past U+FFFF). A row that is not so plain
# takes rfc8785 itself, so both ways give rfc8785's bytes or its error.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
_CONTEXT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _one_shot(encode: Callable[[Any], str], *, sort_keys: bool) -> Callable[[Any], str]:
    """``encode`` without the JSONEncoder's per-call set-up: the C encoder that JSONEncoder.encode
    builds on every call (same arguments, so the same text), built once. No circular check: the
    values come from a JSON text or are flat."""
    if c_make_encoder is None:  # no C accelerator: JSONEncoder's own path
        return encode
    make = c_make_encoder(None, _no_default, encode_basestring, None, ":", ",", sort_keys, False, True)
    return lambda value: "".join(make(value, 0))


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_CANONICAL_FAST = _one_shot(_CANONICAL, sort_keys=True)
_CONTEXT_FAST = _one_shot(_CONTEXT, sort_keys=False)
_MAX_SAFE = 2**53 - 1
_LONG_DIGITS = re.compile(r"\d{16}").search  # any integer of 16 digits or more may pass 2^53 - 1


class _NotPlain(Exception):
    pass


def _refuse(_token: str) -> Any:
    raise _NotPlain


# The C scanner calls parse_float and parse_constant only for such tokens: integers cost nothing.
_DECODER = json.JSONDecoder(parse_float=_refuse, parse_constant=_refuse)
# One value from the start of the text, and where it ends (JSONDecoder.decode without its
# whitespace matching: Postgres writes none around a jsonb's text).
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]
_sha256 = hashlib.sha256


def row_digest(*, seq: int, action: str, occurred_at: str, details: str) -> bytes:
    """SHA-256 digest of the record ``row_hash`` covers, from ``occurred_at`` already written by
    ``timestamp()`` and ``details`` as JSON text (Postgres' ``details::text``)."""
    if (
        details.isascii()
        and action.isascii()
        and _LONG_DIGITS(details) is None
        and type(seq) is int
        and 0 <= seq <= _MAX_SAFE
    ):
        try:
            value, end = _SCAN(details, 0)
        except (_NotPlain, StopIteration):
            end = -1
        if end == len(details):
            # The record's four keys in their sorted order, the details by the C encoder: the text
            # _CANONICAL writes for the whole dict, without building and sorting it per row.
            text = (
                f'{{"action":{encode_basestring(action)},"details":{_CANONICAL_FAST(value)},'
                f'"occurred_at":{encode_basestring(occurred_at)},"seq":{seq}}}'
            )
            return _sha256(text.encode()).digest()
    record = {"seq": seq, "action": action, "occurred_at": occurred_at, "details": json.loads(details)}
    return _sha256(rfc8785.dumps(record)).digest()


def context_digest(
    *, seq: int, actor_id: str | None, entity_type: str, entity_id: str | None, request_id: str | None
) -> bytes:
    """``context_hash`` as a digest, from the actor's id as text (Postgres' ``actor_id::text``)."""
    return _sha256(_CONTEXT_FAST([seq, actor_id, entity_type, entity_id, request_id]).encode()).digest()
