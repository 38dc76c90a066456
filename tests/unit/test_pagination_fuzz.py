"""decode_cursor on anything (hypothesis): keys of the list's types within their columns' range, or
a ValidationFailed (422); never another exception, never a value Postgres would refuse."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.models import AuditLog, LedgerEntry, Transfer
from core.pagination import decode_cursor, newest_first

LISTS = [newest_first(Transfer), (LedgerEntry.seq,), (AuditLog.id,)]
TAGS = [",".join(f"{k.table.name}.{k.key}" for k in keys) for keys in LISTS]
BIGINT = 2**63


def raw(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
cursors = st.one_of(
    st.text(max_size=100),
    st.builds(lambda t, vs: raw([t, *vs]), st.sampled_from(TAGS), st.lists(json_values, max_size=3)),
    st.builds(lambda t, n: raw([t, n]), st.sampled_from(TAGS), st.integers(min_value=-(2**70), max_value=2**70)),
    st.builds(
        lambda t, d, i: raw([t, d.isoformat(), str(i)]),
        st.sampled_from(TAGS),
        st.datetimes(timezones=st.just(None) | st.timezones()),
        st.uuids(),
    ),
)


@given(cursor=cursors, keys=st.sampled_from(LISTS))
@example(cursor=raw(["audit_log.id", BIGINT]), keys=(AuditLog.id,))
@example(cursor=raw(["ledger_entries.seq", -BIGINT - 1]), keys=(LedgerEntry.seq,))
@example(cursor=base64.urlsafe_b64encode(b'["audit_log.id",' + b"9" * 5000 + b"]").decode(), keys=(AuditLog.id,))
def test_a_cursor_decodes_to_storable_keys_or_is_refused(cursor: str, keys: Any) -> None:
    try:
        values = decode_cursor(cursor, keys)
    except ValidationFailed as refused:
        assert refused.extra == {"errors": {"cursor": ["Invalid cursor."]}}
        return
    for key, value in zip(keys, values, strict=True):
        python_type = key.type.python_type
        assert type(value) is python_type or (python_type is datetime and isinstance(value, datetime))
        if python_type is int:
            assert -BIGINT <= value < BIGINT
        if python_type is datetime:
            assert value.tzinfo is not None
        if python_type is uuid.UUID:
            assert isinstance(value, uuid.UUID)


def test_the_bigint_edges() -> None:
    assert decode_cursor(raw(["audit_log.id", BIGINT - 1]), (AuditLog.id,)) == [BIGINT - 1]
    assert decode_cursor(raw(["audit_log.id", -BIGINT]), (AuditLog.id,)) == [-BIGINT]
