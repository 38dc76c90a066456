"""GET /accounts/{id}/statement: opening + entries = closing over random periods, JSON and CSV."""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from core import statements as statements_module
from core.errors import ValidationFailed
from core.models import Account, LedgerEntry
from core.statements import safe_cell, statement
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer
from web.schemas import StatementOut


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def url(account_id, start: datetime | str, end: datetime | str) -> str:  # type: ignore[no-untyped-def]
    params = {"from": start if isinstance(start, str) else iso(start), "to": end if isinstance(end, str) else iso(end)}
    return f"/api/v1/accounts/{account_id}/statement?{urlencode(params)}"


def move(sessions, payer, payee_account, amount: int, reference: str | None = None) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        transfer = submit_transfer(
            s,
            user=payer.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(payer.account.id, payee_account.id, amount, "USD", reference),
        ).transfer
    with sessions.begin() as s:
        settle_transfer(s, transfer.id)


@pytest.fixture
def history(request, sessions, make_customer, admin_user):  # type: ignore[no-untyped-def]
    """Alice's account with 24 entries (deposits, payments both ways, one failed), a little apart."""
    # In one rolled-back test transaction every entry would have the same created_at (now()).
    assert request.node.get_closest_marker("commits"), "a test with a history must be marked commits"
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, bob.account, 100_000)
    rng = random.Random(12)
    for i in range(24):
        kind = i % 3
        if kind == 0:
            fund(sessions, admin_user, alice.account, rng.randint(100, 5000))
        elif kind == 1:
            move(sessions, alice, bob.account, rng.randint(1, 3000), reference=f"to bob {i}")  # may fail
        else:
            move(sessions, bob, alice.account, rng.randint(1, 2000), reference=f"from bob {i}")
        time.sleep(0.002)
    with sessions() as s:
        times = list(
            s.scalars(
                select(LedgerEntry.created_at)
                .where(LedgerEntry.account_id == alice.account.id)
                .order_by(LedgerEntry.created_at)
            )
        )
    return alice, bob, times


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(
    "start,end",
    [
        ("1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"),  # past datetime's range in UTC
    ],
)
def test_any_length_of_time_is_one_statement(client, make_customer, sessions, admin_user, start, end) -> None:  # type: ignore[no-untyped-def]
    """The period is not bounded (its entries are): a whole history in one statement, or a 4xx, never a 500."""
    c = make_customer()
    fund(sessions, admin_user, c.account, 700)
    r = client.get(
        f"/api/v1/accounts/{c.account.id}/statement?{urlencode({'from': start, 'to': end})}",
        headers=login(client, c.email),
    )
    if r.status_code != 200:
        assert_problem(r, 422, "VALIDATION_ERROR")
        return
    assert r.json["opening_balance"] == 0 and r.json["closing_balance"] == 700
    assert [e["amount"] for e in r.json["entries"]] == [700]


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_opening_plus_entries_is_closing_over_random_periods(client, sessions, history) -> None:  # type: ignore[no-untyped-def]
    alice, _, times = history
    h = login(client, alice.email)
    rng = random.Random(7)
    first, last = times[0] - timedelta(seconds=1), times[-1] + timedelta(seconds=1)
    span = (last - first).total_seconds()
    periods = [(first, last)] + [
        tuple(sorted(first + timedelta(seconds=rng.uniform(0, span)) for _ in range(2))) for _ in range(25)
    ]
    periods += [(times[5], times[9]), (times[9], times[10]), (times[-1], last)]  # boundaries on entries
    for start, end in periods:
        js = client.get(url(alice.account.id, start, end), headers=h)
        assert js.status_code == 200, js.json
        body = js.json
        entries = body["entries"]
        assert body["opening_balance"] + sum(e["amount"] for e in entries) == body["closing_balance"]
        # The opening balance is where the last earlier entry left the account (0 if none).
        before = [t for t in times if t < start]
        assert len(entries) == sum(1 for t in times if start <= t < end)
        if entries:
            assert entries[0]["balance_after"] - entries[0]["amount"] == body["opening_balance"]
            assert entries[-1]["balance_after"] == body["closing_balance"]
            for a, b in itertools.pairwise(entries):
                assert a["created_at"] <= b["created_at"] and b["balance_after"] == a["balance_after"] + b["amount"]
        elif not before:
            assert body["opening_balance"] == 0
        # The CSV says the same, and the csv module reads it back.
        text = client.get(url(alice.account.id, start, end), headers={**h, "Accept": "text/csv"})
        assert text.status_code == 200 and text.mimetype == "text/csv"
        rows = parse_csv(text.get_data(as_text=True))
        assert [(r["transfer_id"], int(r["amount"]), int(r["balance_after"])) for r in rows] == [
            (e["transfer_id"], e["amount"], e["balance_after"]) for e in entries
        ]
        assert [datetime.fromisoformat(r["created_at"]) for r in rows] == [
            datetime.fromisoformat(e["created_at"]) for e in entries
        ]
    whole = client.get(url(alice.account.id, first, last), headers=h).json
    assert whole["opening_balance"] == 0 and whole["closing_balance"] == balance(sessions, alice.account.id)
    assert len(whole["entries"]) == len(times)


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_json_shape_and_csv_file(client, history) -> None:  # type: ignore[no-untyped-def]
    alice, _, times = history
    h = login(client, alice.email)
    start, end = times[0], times[-1] + timedelta(seconds=1)
    body = client.get(url(alice.account.id, start, end), headers={**h, "Accept": "application/json"}).json
    assert set(body) == {"account_id", "currency", "from", "to", "opening_balance", "closing_balance", "entries"}
    assert body["account_id"] == str(alice.account.id) and body["currency"] == "USD"
    assert datetime.fromisoformat(body["from"]) == start and datetime.fromisoformat(body["to"]) == end
    assert set(body["entries"][0]) == {"id", "transfer_id", "amount", "balance_after", "reference", "created_at"}
    r = client.get(url(alice.account.id, start, end), headers={**h, "Accept": "text/csv"})
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith('.csv"')
    lines = r.get_data(as_text=True).split("\r\n")
    assert lines[0] == "created_at,transfer_id,amount,balance_after,reference"
    refs = [row["reference"] for row in parse_csv(r.get_data(as_text=True))]
    assert "test funding" in refs and any(ref.startswith("from bob") for ref in refs)


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_json_is_what_the_schema_writes(client, sessions, history, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The view writes a page's entries itself (a schema dump per entry is too slow for a heavy
    account): byte for byte what StatementOut writes, on a middle page and on the last."""
    alice, _, times = history
    monkeypatch.setattr(statements_module, "MAX_ENTRIES", 10)
    h = login(client, alice.email)
    start, end = times[0], times[-1] + timedelta(seconds=1)
    cursor = None
    for _ in range(3):
        path = url(alice.account.id, start, end) + (f"&cursor={cursor}" if cursor else "")
        got = client.get(path, headers=h).get_data()
        with sessions() as s:
            page = statement(s, s.get_one(Account, alice.account.id), start, end, cursor=cursor)
        with client.application.app_context():
            expected = client.application.json.response(StatementOut().dump(page)).get_data()
        assert got == expected
        cursor = page.next_cursor
    assert cursor is None and b'"next_cursor"' not in got and b"from bob" in expected


@pytest.mark.parametrize(
    "reference",
    [
        '=HYPERLINK("http://x")',
        "+1+1",
        "-2+3",
        "@SUM(A1)",
        "\tcmd",
        "\rcmd",
        # Spreadsheets skip leading blanks and invisible characters before a formula.
        " =1+1",
        "  @SUM(A1)",
        '\u200b=HYPERLINK("http://x")',  # zero width space
        "\u202e=cmd",  # right-to-left override
        "\ufeff+1",  # byte order mark
        "\u00a0\u2060-2+3",  # no-break space, word joiner
    ],
)
def test_csv_neutralises_formulas(client, sessions, make_customer, admin_user, reference) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 1000)
    move(sessions, alice, bob.account, 10, reference=reference)
    now = datetime.now(UTC)
    r = client.get(
        url(bob.account.id, now - timedelta(hours=1), now + timedelta(hours=1)),
        headers={**login(client, bob.email), "Accept": "text/csv"},
    )
    (row,) = parse_csv(r.get_data(as_text=True))
    assert row["reference"] == "'" + reference and row["amount"] == "10"


def test_safe_cell_leaves_plain_text_alone() -> None:
    assert safe_cell("invoice 42") == "invoice 42" and safe_cell(None) == "" and safe_cell("a=b") == "a=b"
    assert safe_cell(" invoice 42") == " invoice 42" and safe_cell("\u200b") == "\u200b" and safe_cell(" ") == " "


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_only_the_owner_or_an_admin(client, history, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice, _, times = history
    now = datetime.now(UTC)
    stranger = login(client, make_customer().email)
    assert_problem(client.get(url(alice.account.id, times[0], now), headers=stranger), 404, "NOT_FOUND")
    assert_problem(client.get(url(uuid.uuid4(), times[0], now), headers=stranger), 404, "NOT_FOUND")
    as_admin = client.get(url(alice.account.id, times[0], now), headers=login(client, admin_user.email))
    assert as_admin.status_code == 200 and len(as_admin.json["entries"]) == len(times)
    assert client.get(url(alice.account.id, times[0], now)).status_code == 401


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},  # to before from
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},  # empty period
        {"from": "2026-01-01T00:00:00Z"},  # to missing
        {"to": "2026-01-01T00:00:00Z"},  # from missing
        {"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00Z"},  # no offset: not an instant
        {"from": "yesterday", "to": "2026-01-02T00:00:00Z"},
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "limit": "5"},  # unknown parameter
        {"from": "2026-01-01T00:00:00+0100x", "to": "2026-01-02T00:00:00Z"},
        # RFC 3339 instants in the form YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM) only (API.md).
        {"from": "2026-01-01 00:00:00Z", "to": "2026-01-02T00:00:00Z"},  # a space for the T
        {"from": "2026-01-01T00:00Z", "to": "2026-01-02T00:00:00Z"},  # no seconds
        {"from": "2026-01-01T00:00:00+0100", "to": "2026-01-02T00:00:00Z"},  # offset without a colon
        {"from": "2026-01-01T00:00:00+01", "to": "2026-01-02T00:00:00Z"},  # offset without minutes
        {"from": "20260101T000000Z", "to": "2026-01-02T00:00:00Z"},  # ISO 8601 basic format
        {"from": "2026-W01-1T00:00:00Z", "to": "2026-01-02T00:00:00Z"},  # week date
        {"from": "2026-01-01T00:00:00.Z", "to": "2026-01-02T00:00:00Z"},  # empty fraction
        {"from": "2026-01-01", "to": "2026-01-02T00:00:00Z"},  # a date
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "cursor": "bm9wZQ"},  # a foreign cursor
    ],
)
def test_bad_periods_are_422(client, make_customer, query) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    r = client.get(f"/api/v1/accounts/{c.account.id}/statement?{urlencode(query)}", headers=login(client, c.email))
    assert_problem(r, 422, "VALIDATION_ERROR")


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_offsets_are_instants(client, history) -> None:  # type: ignore[no-untyped-def]
    alice, _, times = history
    h = login(client, alice.email)
    start, end = times[3], times[-1] + timedelta(seconds=1)
    utc = client.get(url(alice.account.id, start, end), headers=h).json
    same_instant = start.astimezone(timezone(timedelta(hours=2))).isoformat()  # "...+02:00"
    other = client.get(url(alice.account.id, same_instant, end), headers=h).json
    assert other["entries"] == utc["entries"] and other["opening_balance"] == utc["opening_balance"]
    assert other["from"] == utc["from"]  # given back in UTC


def test_unsupported_accept_is_406(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    now = datetime.now(UTC)
    r = client.get(
        url(c.account.id, now - timedelta(days=1), now), headers={**login(client, c.email), "Accept": "text/html"}
    )
    assert_problem(r, 406, "NOT_ACCEPTABLE")
    default = client.get(
        url(c.account.id, now - timedelta(days=1), now), headers={**login(client, c.email), "Accept": "*/*"}
    )
    assert default.status_code == 200 and default.mimetype == "application/json"


@pytest.mark.parametrize(
    "start,end",
    [
        ("2026-01-01T00:00:00.5Z", "2026-01-02T00:00:00.123456789+01:00"),
        ("2026-01-01T00:00:00-05:30", "2100-01-01T00:00:00Z"),
    ],
)
def test_rfc3339_forms_are_accepted(client, make_customer, start, end) -> None:  # type: ignore[no-untyped-def]
    c = make_customer()
    r = client.get(
        f"/api/v1/accounts/{c.account.id}/statement?{urlencode({'from': start, 'to': end})}",
        headers=login(client, c.email),
    )
    assert r.status_code == 200, r.json


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_a_longer_period_comes_in_pages(sessions, history) -> None:  # type: ignore[no-untyped-def]
    """Pages of at most max_entries join exactly; the opening balance is the period's on every
    page, the closing balance only on the last."""
    alice, _, times = history
    start, end = times[2], times[-1] + timedelta(seconds=1)
    with sessions() as s:
        account = s.get_one(Account, alice.account.id)
        whole = statement(s, account, start, end)
        assert whole.next_cursor is None and len(whole.entries) == len(times) - 2
        for size in (1, 5, 11, len(whole.entries) - 1, len(whole.entries)):
            pages = [statement(s, account, start, end, max_entries=size)]
            while pages[-1].next_cursor:
                pages.append(statement(s, account, start, end, cursor=pages[-1].next_cursor, max_entries=size))
            assert [e.id for p in pages for e in p.entries] == [e.id for e in whole.entries]
            assert all(len(p.entries) == size for p in pages[:-1]) and 0 < len(pages[-1].entries) <= size
            assert {p.opening_balance for p in pages} == {whole.opening_balance}
            assert [p.closing_balance for p in pages] == [None] * (len(pages) - 1) + [whole.closing_balance]
        # A cursor continues only its own request.
        cursor = statement(s, account, start, end, max_entries=3).next_cursor
        assert cursor
        for other_start, other_end in ((times[3], end), (start, end + timedelta(seconds=1))):
            with pytest.raises(ValidationFailed):
                statement(s, account, other_start, other_end, cursor=cursor)


@pytest.mark.commits  # the history's entries are apart in time: created_at is now() of each transaction
def test_pages_over_http_and_csv_in_one_file(client, history, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alice, _, times = history
    monkeypatch.setattr(statements_module, "MAX_ENTRIES", 10)
    monkeypatch.setattr(statements_module, "CSV_CHUNK_ROWS", 7)  # several chunks, one not full
    h = login(client, alice.email)
    first, last = times[0], times[-1] + timedelta(seconds=1)
    pages = [client.get(url(alice.account.id, first, last), headers=h).json]
    while "next_cursor" in pages[-1]:
        assert pages[-1]["closing_balance"] is None
        pages.append(
            client.get(url(alice.account.id, first, last) + f"&cursor={pages[-1]['next_cursor']}", headers=h).json
        )
    assert [len(p["entries"]) for p in pages] == [10, 10, 4]
    entries = [e for p in pages for e in p["entries"]]
    assert pages[-1]["closing_balance"] == entries[-1]["balance_after"] and pages[0]["opening_balance"] == 0
    assert set(pages[-1]) == {"account_id", "currency", "from", "to", "opening_balance", "closing_balance", "entries"}
    r = client.get(url(alice.account.id, first, last), headers={**h, "Accept": "text/csv"})
    assert r.is_streamed and r.status_code == 200
    rows = parse_csv(r.get_data(as_text=True))
    assert [(row["transfer_id"], int(row["balance_after"])) for row in rows] == [
        (e["transfer_id"], e["balance_after"]) for e in entries
    ]
    # A CSV is one file: a cursor is refused, as one from another period is for JSON.
    with_cursor = url(alice.account.id, first, last) + f"&cursor={pages[0]['next_cursor']}"
    assert_problem(client.get(with_cursor, headers={**h, "Accept": "text/csv"}), 422, "VALIDATION_ERROR")
    other_period = url(alice.account.id, times[1], last) + f"&cursor={pages[0]['next_cursor']}"
    assert_problem(client.get(other_period, headers=h), 422, "VALIDATION_ERROR")
    # A forged cursor is a 422 too, never a 500: values out of BIGINT's range, or of another type.
    raw = json.loads(base64.urlsafe_b64decode(pages[0]["next_cursor"] + "=="))
    for index, value in ((5, 2**63), (6, 2**63), (7, -(2**64)), (6, True), (7, "1"), (6, raw[4] - 1)):
        forged = [*raw[:index], value, *raw[index + 1 :]]
        cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        r = client.get(url(alice.account.id, first, last) + f"&cursor={cursor}", headers=h)
        assert_problem(r, 422, "VALIDATION_ERROR")


def test_statements_are_rate_limited_per_user(make_app, make_customer) -> None:  # type: ignore[no-untyped-def]
    """JSON and CSV share one per-user budget; another customer has their own."""
    client = make_app(
        rate_limit_key_prefix=f"test-{uuid.uuid4().hex}", rate_limit_statements="3 per minute"
    ).test_client()
    alice, bob = make_customer(), make_customer()
    now = datetime.now(UTC)
    h = login(client, alice.email)
    asked = [
        client.get(url(alice.account.id, now - timedelta(days=1), now), headers={**h, "Accept": accept}).status_code
        for accept in ("application/json", "text/csv", "application/json")
    ]
    assert asked == [200, 200, 200]
    for accept in ("application/json", "text/csv"):
        r = client.get(url(alice.account.id, now - timedelta(days=1), now), headers={**h, "Accept": accept})
        assert_problem(r, 429, "RATE_LIMITED")
        assert 0 < int(r.headers["Retry-After"]) <= 60
    assert (
        client.get(url(bob.account.id, now - timedelta(days=1), now), headers=login(client, bob.email)).status_code
        == 200
    )
