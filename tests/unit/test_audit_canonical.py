"""The fast ways to the audit leaf hashes (core/audit/leaf.py) write rfc8785's exact bytes, or
fail as it does: from Python values (the sealer) and from the JSON text Postgres returns
(verify-audit), whatever the value holds (floats, big integers, non-ASCII keys and text)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from core.audit import leaf
from core.audit.merkle import merkle_root, root_of_digests

_keys = st.one_of(st.text(max_size=6), st.sampled_from(["amount", "\U0001f600", "\uffff", "é", "a"]))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.integers(min_value=-(2**53) - 2, max_value=-(2**53) + 2),
    st.integers(min_value=2**53 - 2, max_value=2**53 + 2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4))


def _rfc8785(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_canonical_is_rfc8785(value: Any) -> None:
    expected = _rfc8785(value)
    if isinstance(expected, bytes):
        assert leaf.canonical(value) == expected
    else:
        with pytest.raises(expected):
            leaf.canonical(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5), st.integers(min_value=1, max_value=2**40), st.text(max_size=12))
def test_row_digest_from_text_is_the_row_hash(details: dict[str, Any], seq: int, action: str) -> None:
    """As Postgres writes jsonb: a float's text, any order, spaces."""
    occurred_at = "2026-12-03T18:00:00.123456+00:00"
    text = json.dumps(details, ensure_ascii=False, separators=(", ", ": "))
    fields = {"seq": seq, "action": action, "occurred_at": occurred_at, "details": json.loads(text)}
    expected = _rfc8785(fields)
    if isinstance(expected, bytes):
        digest = leaf.row_digest(seq=seq, action=action, occurred_at=occurred_at, details=text)
        assert digest == hashlib.sha256(expected).digest()
    else:
        with pytest.raises(expected):
            leaf.row_digest(seq=seq, action=action, occurred_at=occurred_at, details=text)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40))
def test_the_root_of_digests_is_the_root_of_their_hex(leaves: list[bytes]) -> None:
    reference = [hashlib.sha256(b"\x00" + x).digest() for x in leaves]
    while len(reference) > 1:
        pairs = range(0, len(reference), 2)
        reference = [
            hashlib.sha256(b"\x01" + reference[i] + reference[i + 1]).digest()
            if i + 1 < len(reference)
            else reference[i]
            for i in pairs
        ]
    assert root_of_digests(leaves) == reference[0]
    assert merkle_root([x.hex() for x in leaves]) == reference[0].hex()


_optional_text = st.one_of(st.none(), st.text(max_size=10))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**62),
    st.uuids() | st.none(),
    st.text(max_size=10),
    _optional_text,
    _optional_text,
)
def test_context_digest_from_text_is_the_context_hash(
    seq: int, actor: Any, entity_type: str, entity_id: str | None, request_id: str | None
) -> None:
    """The sealer and verify-audit hash the actor's id as Postgres writes it (``actor_id::text``)."""
    fields = {"seq": seq, "entity_type": entity_type, "entity_id": entity_id, "request_id": request_id}
    try:
        expected: bytes | type[Exception] = bytes.fromhex(leaf.context_hash(actor_id=actor, **fields))
    except UnicodeEncodeError as exc:  # a lone surrogate (Postgres' text holds none)
        expected = type(exc)
    actor_text = str(actor) if actor is not None else None
    if isinstance(expected, bytes):
        assert leaf.context_digest(actor_id=actor_text, **fields) == expected
    else:
        with pytest.raises(expected):
            leaf.context_digest(actor_id=actor_text, **fields)
