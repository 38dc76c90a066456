"""Every list's ``cursor`` parameter, fuzzed (hypothesis) through the API against real Postgres: a
damaged, foreign or out-of-range cursor is a 4xx problem+json, never a 500.

An integer key past its column's range (ledger entries' ``seq``, audit rows' ``id``: bigint) went
to Postgres as the comparison's literal, which refused it: a 500."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.models import AuditLog, LedgerEntry, Transfer, User
from core.pagination import newest_first
from core.payouts.models import Counterparty, Payout
from core.schedules.models import ScheduledTransfer
from core.webhooks.models import WebhookDelivery
from tests.authflow import API, PROBLEM, bearer, tokens
from tests.factories import fund
from tests.profiles import examples

BIGINT = 2**63


def tag(keys: Any) -> str:
    """A list's cursor tag (core/pagination.py): its keys' names."""
    return ",".join(f"{k.table.name}.{k.key}" for k in keys)


TAGS = [
    tag(keys)
    for keys in (
        newest_first(Transfer),
        newest_first(User),
        newest_first(WebhookDelivery),
        newest_first(ScheduledTransfer),
        newest_first(Counterparty),
        newest_first(Payout),
        (LedgerEntry.seq,),
        (AuditLog.id,),
    )
]


def raw(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.builds(
    lambda d, tz: d.replace(tzinfo=tz).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
)
integers = st.one_of(
    st.integers(),
    st.integers(min_value=BIGINT - 3, max_value=BIGINT + 3),
    st.integers(min_value=-BIGINT - 3, max_value=-BIGINT + 3),
    st.integers(min_value=2**31 - 3, max_value=2**31 + 3),
)
scalars = st.one_of(
    st.none(), st.booleans(), integers, st.floats(allow_nan=False), instants, st.uuids().map(str), st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
cursors = st.one_of(
    st.text(max_size=600),  # garbage, and longer than the 512 the schema allows
    st.builds(lambda t, vs: raw([t, *vs]), st.sampled_from(TAGS), st.lists(values, max_size=3)),
    st.builds(lambda t, v: raw([t, v]), st.sampled_from(TAGS), integers),
    st.builds(lambda t, a, i: raw([t, a, i]), st.sampled_from(TAGS), instants, st.uuids().map(str)),
    values.map(lambda v: raw(v)),
)


@pytest.fixture
def lists(client, make_customer, sessions, admin_user) -> dict[str, tuple[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """Every list endpoint that takes a cursor (by its OpenAPI path): its URL and a caller that may read it."""
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    h = bearer(tokens(client, alice.email)["access_token"])
    admin_h = bearer(tokens(client, admin_user.email)["access_token"])
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["transfer.failed"]}
    r = client.post(f"{API}/webhooks/endpoints", json=hook, headers=h)
    assert r.status_code == 201, r.json
    return {
        f"{API}/transfers": (f"{API}/transfers", h),
        f"{API}/accounts/{{account_id}}/entries": (f"{API}/accounts/{alice.account.id}/entries", h),
        f"{API}/webhooks/endpoints/{{endpoint_id}}/deliveries": (
            f"{API}/webhooks/endpoints/{r.json['id']}/deliveries",
            h,
        ),
        f"{API}/scheduled-transfers": (f"{API}/scheduled-transfers", h),
        f"{API}/counterparties": (f"{API}/counterparties", h),
        f"{API}/payouts": (f"{API}/payouts", h),
        f"{API}/events": (f"{API}/events", h),
        f"{API}/admin/users": (f"{API}/admin/users", admin_h),
        f"{API}/admin/audit": (f"{API}/admin/audit", admin_h),
    }


def test_every_list_with_a_cursor_is_fuzzed(client, lists) -> None:  # type: ignore[no-untyped-def]
    """A new list with a cursor fails this until it joins the fuzz below."""
    spec = client.get("/openapi.json").json
    with_cursor = {
        path
        for path, item in spec["paths"].items()
        if path.startswith(API) and any(p["name"] == "cursor" for p in item.get("get", {}).get("parameters", []))
    }
    # The statement's cursor is a statement engineer's (tests/integration/test_statements.py).
    assert with_cursor - {f"{API}/accounts/{{account_id}}/statement"} <= set(lists), with_cursor - set(lists)


@given(cursor=cursors)
@example(cursor=raw(["ledger_entries.seq", BIGINT]))
@example(cursor=raw(["audit_log.id", BIGINT]))
@example(cursor=raw(["audit_log.id", -BIGINT - 1]))
@example(cursor=raw(["audit_log.id", 10**400]))
@example(cursor=raw([TAGS[0], "0001-01-01T00:00:00+23:59", str(uuid.uuid4())]))
@example(cursor=raw([TAGS[0], "9999-12-31T23:59:59-23:59", str(uuid.uuid4())]))
@example(cursor=raw([TAGS[0], datetime.now(UTC).isoformat(), "{" + str(uuid.uuid4()) + "}"]))
@example(cursor="[" * 400)
@settings(
    max_examples=examples(60),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_bad_cursor_is_a_4xx_problem_never_a_500(client, lists, cursor: str) -> None:  # type: ignore[no-untyped-def]
    for path, headers in lists.values():
        r = client.get(path, query_string={"cursor": cursor}, headers=headers)
        assert r.status_code < 500, (path, cursor, r.get_data(as_text=True))
        if r.status_code >= 400:
            assert r.headers["Content-Type"] == PROBLEM and r.json["status"] == r.status_code, (path, cursor)
